using System.Text.Json;
using System.Text.Json.Serialization;

namespace Defeat.Samples.Shared.Study;

/// <summary>The results of one radius in one cell.</summary>
/// <param name="Epsilon">Radius in [0, 1] pixel units.</param>
/// <param name="Robust">Per-image worst case over the suite.</param>
/// <param name="ByAttack">Accuracy under each attack of the suite alone (under a survivors-only protocol: after that attack
/// and every earlier one, each having run only on the images still standing).</param>
/// <param name="FlipRate">Share of patch codes that change under the first attack (null without a shield).</param>
/// <param name="RobustCorrect">Per test image, '1' when it survives every attack (test-set order).</param>
public sealed record StudyEpsilonResult(double Epsilon, double Robust, IReadOnlyDictionary<string, double> ByAttack, double? FlipRate, string RobustCorrect);

/// <summary>
/// Everything one (configuration, seed) cell of a study measured; written as one JSON file when the cell finishes, so
/// a study resumes by skipping the cells whose file exists, and its summary is computed from these files alone.
/// </summary>
/// <param name="Configuration">The configuration's name.</param>
/// <param name="Seed">The cell's seed (few-shot draw, initialisation, training attack, evaluation attacks).</param>
/// <param name="Protocol">The protocol's fingerprint (<see cref="StudyProtocol.Fingerprint"/>).</param>
/// <param name="TestImages">Test images evaluated.</param>
/// <param name="TrainImages">Few-shot training images.</param>
/// <param name="Clean">Clean accuracy of the fused prediction.</param>
/// <param name="CleanCorrect">Per test image, '1' when the clean prediction is right.</param>
/// <param name="BranchAccuracy">Clean accuracy of each branch alone (empty without a shield).</param>
/// <param name="CodesUsed">Codewords used on the clean test images (null without a shield).</param>
/// <param name="Perplexity">Perplexity of code usage on the clean test images (null without a shield).</param>
/// <param name="ByEpsilon">Results at each radius.</param>
/// <param name="TrainSeconds">Wall time of training.</param>
/// <param name="EvaluateSeconds">Wall time of evaluation.</param>
/// <param name="Finished">When the cell finished (UTC).</param>
public sealed record StudyCell(
    string Configuration, int Seed, string Protocol, int TestImages, int TrainImages,
    double Clean, string CleanCorrect, IReadOnlyDictionary<string, double> BranchAccuracy, int? CodesUsed, double? Perplexity,
    IReadOnlyList<StudyEpsilonResult> ByEpsilon, double TrainSeconds, double EvaluateSeconds, DateTime Finished)
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.Never };

    /// <summary>The cell's file name in a study folder.</summary>
    /// <param name="configuration">Configuration name.</param>
    /// <param name="seed">Seed.</param>
    public static string FileName(string configuration, int seed) => $"{configuration}--seed{seed}.json";

    /// <summary>Per-image outcomes as a '0'/'1' string (compact in JSON, one character per image).</summary>
    /// <param name="correct">Per-image correctness.</param>
    public static string Bits(IEnumerable<bool> correct) => new(correct.Select(c => c ? '1' : '0').ToArray());

    /// <summary>Parses a '0'/'1' string back into per-image outcomes.</summary>
    /// <param name="bits">Outcomes as written by <see cref="Bits"/>.</param>
    public static bool[] Outcomes(string bits) => bits.Select(c => c switch
    {
        '1' => true,
        '0' => false,
        _ => throw new FormatException($"Per-image outcomes must be '0'/'1' characters, got '{c}'."),
    }).ToArray();

    /// <summary>Writes the cell to <paramref name="folder"/> atomically (a temporary file, then a rename).</summary>
    /// <param name="folder">The study's cell folder.</param>
    public string Save(string folder)
    {
        Directory.CreateDirectory(folder);
        string path = Path.Combine(folder, FileName(Configuration, Seed));
        Defeat.Checkpoints.AtomicFile.WriteAllText(path, JsonSerializer.Serialize(this, Json));
        return path;
    }

    /// <summary>Reads every cell file of a study's cell folder, in file-name order.</summary>
    /// <param name="folder">The study's <c>cells/</c> folder.</param>
    /// <exception cref="DirectoryNotFoundException">There is no such folder.</exception>
    /// <exception cref="InvalidDataException">A file is not a complete cell.</exception>
    public static IReadOnlyList<StudyCell> LoadAll(string folder)
    {
        if (!Directory.Exists(folder))
            throw new DirectoryNotFoundException($"No study cells at {folder}: run the study first.");
        return Directory.EnumerateFiles(folder, "*.json").Order(StringComparer.Ordinal).Select(Load).ToList();
    }

    /// <summary>Reads a cell file.</summary>
    /// <param name="path">A file written by <see cref="Save"/>.</param>
    /// <exception cref="InvalidDataException">The file is not a complete cell.</exception>
    public static StudyCell Load(string path)
    {
        StudyCell? cell;
        try
        {
            cell = JsonSerializer.Deserialize<StudyCell>(File.ReadAllText(path), Json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path} is not a study cell: {e.Message}", e);
        }
        if (cell is null || cell.Configuration is null || cell.CleanCorrect is null || cell.ByEpsilon is null
            || cell.CleanCorrect.Length != cell.TestImages || cell.ByEpsilon.Any(r => r.RobustCorrect?.Length != cell.TestImages))
            throw new InvalidDataException($"{path} is not a complete study cell (missing fields or per-image outcomes of the wrong length).");
        return cell;
    }
}
