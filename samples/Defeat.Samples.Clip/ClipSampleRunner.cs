using System.Text.Json.Nodes;
using Defeat.Attacks;
using Defeat.Backbones;
using Defeat.Clip;
using Defeat.Clip.Loading;
using Defeat.Clip.Preprocessing;
using Defeat.Clip.Tokenization;
using Defeat.Data;
using Defeat.Evaluation;
using Defeat.Prompting;
using Defeat.Quantization;
using Defeat.Samples.Shared;
using Defeat.Shield;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Samples.Clip;

/// <summary>What one run of the CLIP sample produced.</summary>
/// <param name="Reports">One report per method: zero-shot, APT-style, DEFEAT (official), DEFEAT (anti-collapse).</param>
/// <param name="PlotPath">The PNG with robust accuracy against epsilon and against PGD steps.</param>
/// <param name="TablePath">The results table as markdown.</param>
/// <param name="ClassNames">The classes, in label order.</param>
/// <param name="TrainImages">Images in the few-shot training set.</param>
/// <param name="TestImages">Images evaluated.</param>
/// <param name="Device">Where the models ran.</param>
public sealed record ClipSampleResults(IReadOnlyList<RobustnessReport> Reports, string PlotPath, string TablePath,
    IReadOnlyList<string> ClassNames, long TrainImages, long TestImages, string Device);

/// <summary>
/// The CLIP sample as a callable method: load CLIP (and a robust image tower), read the data set, draw the few-shot
/// set, train the APT-style baseline and DEFEAT, evaluate them and zero-shot CLIP clean and under PGD, and write the
/// table and the plot.
/// </summary>
public static class ClipSampleRunner
{
    /// <summary>Turns a device name into a device, checking that it is present.</summary>
    /// <param name="name">"cpu", "cuda" or "cuda:N".</param>
    /// <exception cref="DeviceUnavailableException">CUDA was asked for and <c>torch.cuda.is_available()</c> is false, or the index is too large.</exception>
    public static Device ResolveDevice(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (name == "cpu") return CPU;
        if (!cuda.is_available())
            throw new DeviceUnavailableException(
                $"--device {name}: no CUDA device is available (torch.cuda.is_available() is false). Build with -p:TorchBackend=cuda-linux on a machine with an NVIDIA GPU and driver, or run with --device cpu.");
        int index = name == "cuda" ? 0 : int.Parse(name["cuda:".Length..], System.Globalization.CultureInfo.InvariantCulture);
        if (index >= cuda.device_count())
            throw new DeviceUnavailableException($"--device {name}: only {cuda.device_count()} CUDA device(s) are present (indices from 0).");
        return new Device(DeviceType.CUDA, index);
    }

    /// <summary>Runs the sample.</summary>
    /// <param name="options">What to run; validated here.</param>
    /// <param name="progress">Receives each stage's progress (loading, training, evaluation, curves).</param>
    /// <param name="loggers">Loggers for the library parts; none when null.</param>
    /// <param name="cancellationToken">Stops between steps; training checkpoints of completed epochs stay in the output folder.</param>
    /// <exception cref="ArgumentException">An option is missing or out of range.</exception>
    /// <exception cref="DeviceUnavailableException">The device is not present.</exception>
    /// <exception cref="DatasetException">The data set cannot be read.</exception>
    /// <exception cref="ClipCheckpointException">A checkpoint cannot be loaded.</exception>
    public static ClipSampleResults Run(ClipSampleOptions options, IProgress<StageProgress>? progress = null,
        ILoggerFactory? loggers = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        loggers ??= NullLoggerFactory.Instance;
        progress ??= new Progress<StageProgress>(_ => { });
        var log = loggers.CreateLogger(typeof(ClipSampleRunner).FullName!);
        var device = ResolveDevice(options.Device);

        // The data are listed (and checked) before the checkpoint is loaded: a typo in a path fails in a second.
        var (train, test, source) = ListData(options);
        var classes = train.ClassNames;
        var (trainIndices, testIndices) = Split(options, train, test, source);
        log.LogInformation("{Classes} classes; {Train} few-shot training images, {Test} test images", classes.Count, trainIndices.Count, testIndices.Count);

        using var clip = LoadClip(options, log);
        var preprocessor = ClipPreprocessor.For(clip);
        using var fewShot = Load(train, trainIndices, preprocessor, "load few-shot images", progress, cancellationToken);
        using var testSet = Load(test, testIndices, preprocessor, "load test images", progress, cancellationToken);

        clip.to(device);
        var halfBackbone = options.Half ? new PrecisionBackbone(clip, ScalarType.Float16) : null;
        // The wrapper owns no tensors of its own; the CLIP model it wraps is disposed above.
        IVisionLanguageBackbone backbone = halfBackbone is null ? clip : halfBackbone;
        Directory.CreateDirectory(options.Output);
        return new Experiment(options, device, loggers).Run(backbone, fewShot, testSet, source, progress, cancellationToken);
    }

    private static (ImageFileDataset Train, ImageFileDataset Test, string Source) ListData(ClipSampleOptions options)
    {
        if (options.ImageFolder is { } folder)
        {
            var all = ImageFileDataset.FromFolder(folder);
            return (all, all, Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder))));
        }
        var split = CoOpSplit.Read(options.SplitPath!, options.ImageRoot!);
        return (split.Train, split.Test, Path.GetFileNameWithoutExtension(options.SplitPath!));
    }

    /// <summary>Few-shot indices into <paramref name="train"/> and test indices into <paramref name="test"/>. From one image
    /// folder the test images are those not drawn for training.</summary>
    private static (IReadOnlyList<long> Train, IReadOnlyList<long> Test) Split(ClipSampleOptions options, ImageFileDataset train, ImageFileDataset test, string source)
    {
        var labels = train.Labels();
        var counts = new long[train.ClassNames.Count];
        foreach (var y in labels) counts[y]++;
        for (int c = 0; c < counts.Length; c++)
            if (counts[c] < options.Shots)
                throw new DatasetException(source, $"class \"{train.ClassNames[c]}\" has {counts[c]} training images; expected at least --shots {options.Shots}.");
        var draw = FewShotSplit.Draw(labels, counts.Length, options.Shots, options.Seed);

        IReadOnlyList<long> pool = ReferenceEquals(train, test) ? draw.Rest : Enumerable.Range(0, test.Files.Count).Select(i => (long)i).ToList();
        if (pool.Count == 0)
            throw new DatasetException(source, $"no images are left to test on: every class has exactly --shots {options.Shots} images; expected more (or a CoOp split with a test list).");
        if (options.TestPerClass is not { } perClass) return (draw.FewShot, pool);

        // A stratified subset of the pool, capped per class at what the pool holds.
        var poolLabels = pool.Select(i => test.Files[(int)i].Label).ToList();
        var rng = new Random(options.Seed + 1);
        var chosen = new List<long>();
        for (long c = 0; c < test.ClassNames.Count; c++)
        {
            var members = pool.Where((_, k) => poolLabels[k] == c).ToList();
            chosen.AddRange(members.OrderBy(_ => rng.Next()).Take(perClass).Order());
        }
        return (draw.FewShot, chosen);
    }

    private static ClipModel LoadClip(ClipSampleOptions options, ILogger log)
    {
        var loadOptions = new ClipLoadOptions
        {
            VisionHeads = options.VisionHeads,
            TextHeads = options.TextHeads,
            Tokenizer = options.MergesPath is null ? null : ReadTokenizer(options.MergesPath),
            AllowTorchScript = options.AllowTorchScript,
        };
        var clip = ClipLoader.Load(options.ClipPath, loadOptions, log);
        try
        {
            if (options.TeCoAPath is not null) ClipLoader.LoadImageTower(clip, options.TeCoAPath, new ClipLoadOptions { AllowTorchScript = options.AllowTorchScript }, log);
        }
        catch
        {
            clip.Dispose();
            throw;
        }
        return clip;
    }

    private static ClipTokenizer ReadTokenizer(string path)
    {
        if (!File.Exists(path)) throw new DatasetException(Path.GetFullPath(path), "merge list not found; expected a BPE merge file (.txt.gz as CLIP's, or plain text).");
        if (path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase)) return ClipTokenizer.FromFile(path);
        var lines = File.ReadAllText(path).Split('\n').Select(l => l.TrimEnd('\r')).ToList();
        while (lines.Count > 1 && lines[^1].Length == 0) lines.RemoveAt(lines.Count - 1);
        try
        {
            return new ClipTokenizer(lines, mergeCount: lines.Count - 1);
        }
        catch (ArgumentException e)
        {
            throw new DatasetException(Path.GetFullPath(path), $"is not a BPE merge list ({e.Message}); expected a header line, then one \"a b\" merge per line.", e);
        }
    }

    private static LabeledImages Load(ImageFileDataset data, IReadOnlyList<long> indices, ClipPreprocessor preprocessor, string stage,
        IProgress<StageProgress> progress, CancellationToken ct) =>
        data.Load(indices, preprocessor.LoadImage, new SyncProgress<(int Done, int Total)>(p => progress.Report(new StageProgress(stage, p.Done, p.Total))), ct);
}
