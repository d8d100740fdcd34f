using Defeat.Validation;

namespace Defeat.Samples.Clip;

/// <summary>Everything one run of the CLIP sample needs: the checkpoints, the data, the schedule and the device.</summary>
public sealed record ClipSampleOptions
{
    /// <summary>The CLIP checkpoint: OpenAI TorchScript or state dict, or Hugging Face model.safetensors (detected from content).</summary>
    public string ClipPath { get; init; } = "";

    /// <summary>A TeCoA-style robust image tower to replace CLIP's (optional).</summary>
    public string? TeCoAPath { get; init; }

    /// <summary>Whether <see cref="ClipPath"/> and <see cref="TeCoAPath"/> may be TorchScript archives, which run code
    /// when loaded (<see cref="Defeat.Clip.Loading.ClipLoadOptions.AllowTorchScript"/>); only for files you trust.</summary>
    public bool AllowTorchScript { get; init; }

    /// <summary>An image folder with one sub-folder per class; or null when <see cref="SplitPath"/> is given.</summary>
    public string? ImageFolder { get; init; }

    /// <summary>A CoOp split file (split_*.json); needs <see cref="ImageRoot"/>.</summary>
    public string? SplitPath { get; init; }

    /// <summary>The folder the split file's relative paths start from.</summary>
    public string? ImageRoot { get; init; }

    /// <summary>Folder for the results table, the plot and the checkpoints.</summary>
    public string Output { get; init; } = "runs/clip";

    /// <summary>Training images per class (the paper's 16-shot setting).</summary>
    public int Shots { get; init; } = 16;

    /// <summary>Test images per class (a seeded stratified subset); null uses every test image.</summary>
    public int? TestPerClass { get; init; }

    /// <summary>Epochs of adversarial prompt tuning (the first is a warm-up when there are two or more).</summary>
    public int Epochs { get; init; } = 10;

    /// <summary>Images per training step (32 in the paper).</summary>
    public int BatchSize { get; init; } = 32;

    /// <summary>Images per evaluation batch.</summary>
    public int EvaluationBatchSize { get; init; } = 100;

    /// <summary>Steps of the evaluation PGD (the paper: 100, step eps/4, one random start).</summary>
    public int PgdSteps { get; init; } = 20;

    /// <summary>The radii of the table, in [0, 1] pixel units.</summary>
    public IReadOnlyList<double> Epsilons { get; init; } = [1.0 / 255, 4.0 / 255];

    /// <summary>The radii of the robust-accuracy-vs-epsilon curve.</summary>
    public IReadOnlyList<double> CurveEpsilons { get; init; } = [0, 1.0 / 255, 2.0 / 255, 4.0 / 255, 8.0 / 255];

    /// <summary>The step counts of the robust-accuracy-vs-steps curve (at the largest table radius).</summary>
    public IReadOnlyList<int> CurveSteps { get; init; } = [1, 3, 10, 20];

    /// <summary>Radius of the training attack (PGD, 3 steps of 2*eps/3).</summary>
    public double TrainEpsilon { get; init; } = 4.0 / 255;

    /// <summary>Codes of DEFEAT's VQ-VAE codebook (512 in the official code).</summary>
    public int CodebookSize { get; init; } = 512;

    /// <summary>Also run the adaptive suite with AutoAttack's four attacks at the largest radius on every method (survivors only);
    /// the table then says where gradient masking is suspected.</summary>
    public bool AutoAttack { get; init; }

    /// <summary>Seed of every random choice (few-shot draw, test subset, initialisation, attacks).</summary>
    public int Seed { get; init; } = 1;

    /// <summary>"cpu", "cuda" or "cuda:N".</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>Frozen backbone in half precision (GPU only); the trained parts stay float32.</summary>
    public bool Half { get; init; }

    /// <summary>Image-tower attention heads when not CLIP's width / 64 (custom models).</summary>
    public int? VisionHeads { get; init; }

    /// <summary>Text-tower attention heads when not CLIP's width / 64 (custom models).</summary>
    public int? TextHeads { get; init; }

    /// <summary>A BPE merge list for a custom vocabulary (.txt.gz as CLIP's, or plain text: a header line, then one merge
    /// per line, all used); null uses CLIP's own.</summary>
    public string? MergesPath { get; init; }

    /// <summary>Throws when an option is missing, contradicts another or is out of range, naming it.</summary>
    /// <exception cref="ArgumentException">A required option is missing or options contradict each other.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A number is out of range.</exception>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(ClipPath))
            throw new ArgumentException("--clip is required: a CLIP checkpoint (OpenAI .pt TorchScript or state dict, or Hugging Face model.safetensors).", nameof(ClipPath));
        if ((ImageFolder is null) == (SplitPath is null))
            throw new ArgumentException("Give exactly one data set: --images <folder with one sub-folder per class>, or --split <split.json> with --image-root <folder>.", nameof(ImageFolder));
        if (SplitPath is not null && ImageRoot is null)
            throw new ArgumentException($"--split {SplitPath} needs --image-root: the folder its relative image paths start from.", nameof(ImageRoot));
        if (ImageFolder is not null && ImageRoot is not null)
            throw new ArgumentException("--image-root goes with --split only; an image folder (--images) holds its own files.", nameof(ImageRoot));
        OptionChecks.AtLeast(Shots, 1, nameof(Shots));
        if (TestPerClass is { } perClass) OptionChecks.AtLeast(perClass, 1, nameof(TestPerClass)); // null: all of them
        OptionChecks.AtLeast(Epochs, 1, nameof(Epochs));
        OptionChecks.AtLeast(BatchSize, 1, nameof(BatchSize));
        OptionChecks.AtLeast(EvaluationBatchSize, 1, nameof(EvaluationBatchSize));
        OptionChecks.AtLeast(PgdSteps, 1, nameof(PgdSteps));
        NotEmpty(Epsilons, nameof(Epsilons));
        foreach (var e in Epsilons) OptionChecks.InRange(e, 0, 1, nameof(Epsilons), minimumIncluded: false);
        NotEmpty(CurveEpsilons, nameof(CurveEpsilons));
        foreach (var e in CurveEpsilons) OptionChecks.InRange(e, 0, 1, nameof(CurveEpsilons));
        NotEmpty(CurveSteps, nameof(CurveSteps));
        foreach (var s in CurveSteps) OptionChecks.AtLeast(s, 1, nameof(CurveSteps));
        OptionChecks.InRange(TrainEpsilon, 0, 1, nameof(TrainEpsilon), minimumIncluded: false);
        OptionChecks.AtLeast(CodebookSize, 2, nameof(CodebookSize));
        if (VisionHeads is { } visionHeads) OptionChecks.AtLeast(visionHeads, 1, nameof(VisionHeads));
        if (TextHeads is { } textHeads) OptionChecks.AtLeast(textHeads, 1, nameof(TextHeads));
        bool cuda = Device == "cuda" || Device.StartsWith("cuda:", StringComparison.Ordinal);
        if (Device != "cpu" && !cuda)
            throw new ArgumentException($"--device {Device} is not known; expected cpu, cuda or cuda:N.", nameof(Device));
        if (Half && !cuda)
            throw new ArgumentException("--half needs --device cuda: half-precision matrix products on the CPU are slow or unsupported; drop --half on the CPU.", nameof(Half));
    }

    private static void NotEmpty<T>(IReadOnlyList<T>? values, string name)
    {
        if (values is null || values.Count == 0)
            throw new ArgumentOutOfRangeException(name, $"{name} must hold at least one value, got none.");
    }
}
