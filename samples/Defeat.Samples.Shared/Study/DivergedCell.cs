namespace Defeat.Samples.Shared.Study;

/// <summary>
/// A (configuration, seed) cell whose training diverged: a result of the study, kept as a small text file next to the
/// cell files (<c>&lt;configuration&gt;--seed&lt;N&gt;.diverged</c>) so that the summary, built from the folder alone, can say
/// which seeds are missing from a configuration's means and why. Training is deterministic for a seed, so a rerun does
/// not try the cell again; delete the file to force it.
/// </summary>
/// <param name="Configuration">Configuration name.</param>
/// <param name="Seed">Seed.</param>
/// <param name="Protocol">Fingerprint of the protocol it ran under.</param>
/// <param name="Reason">The trainer's message.</param>
public sealed record DivergedCell(string Configuration, int Seed, string Protocol, string Reason)
{
    private const string Extension = ".diverged";

    /// <summary>The file name of a diverged cell in a study's cell folder.</summary>
    /// <param name="configuration">Configuration name.</param>
    /// <param name="seed">Seed.</param>
    public static string FileName(string configuration, int seed) => Path.ChangeExtension(StudyCell.FileName(configuration, seed), Extension);

    /// <summary>Writes the record atomically: the protocol on the first line, the reason on the rest.</summary>
    /// <param name="folder">The study's cell folder.</param>
    /// <returns>The file's path.</returns>
    public string Save(string folder)
    {
        Directory.CreateDirectory(folder);
        string path = Path.Combine(folder, FileName(Configuration, Seed));
        Defeat.Checkpoints.AtomicFile.WriteAllText(path, $"{Protocol}\n{Reason}\n");
        return path;
    }

    /// <summary>Every diverged cell recorded in <paramref name="folder"/> (none when it does not exist).</summary>
    /// <param name="folder">The study's cell folder.</param>
    /// <exception cref="InvalidDataException">A file whose name does not end in <c>--seed&lt;N&gt;.diverged</c>.</exception>
    public static IReadOnlyList<DivergedCell> LoadAll(string folder)
    {
        if (!Directory.Exists(folder))
            return [];
        var cells = new List<DivergedCell>();
        foreach (string path in Directory.EnumerateFiles(folder, "*" + Extension).Order(StringComparer.Ordinal))
        {
            string name = Path.GetFileName(path)[..^Extension.Length];
            int cut = name.LastIndexOf("--seed", StringComparison.Ordinal);
            if (cut <= 0 || !int.TryParse(name.AsSpan(cut + "--seed".Length), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int seed))
                throw new InvalidDataException($"{path}: expected a name <configuration>--seed<N>{Extension}.");
            string[] lines = File.ReadAllText(path).Split('\n', 2);
            cells.Add(new DivergedCell(name[..cut], seed, lines[0], lines.Length > 1 ? lines[1].Trim() : ""));
        }
        return cells;
    }
}
