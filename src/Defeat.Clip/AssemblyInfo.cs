// The CLIP port lives here; see issue "Defeat.Clip".
