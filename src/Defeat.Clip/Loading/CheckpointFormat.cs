namespace Defeat.Clip.Loading;

/// <summary>The kinds of checkpoint file <see cref="ClipLoader"/> reads, told apart by their content.</summary>
public enum CheckpointFormat
{
    /// <summary>A TorchScript archive (<c>torch.jit.save</c>): OpenAI's released <c>ViT-B-32.pt</c> and friends.</summary>
    TorchScript,

    /// <summary>A zip file written by <c>torch.save</c> holding a state dict (or a dict of state dicts, as TeCoA's).</summary>
    PyTorchPickle,

    /// <summary>A safetensors file (Hugging Face's <c>model.safetensors</c>, or one saved by <see cref="ClipLoader.Save"/>).</summary>
    Safetensors,
}
