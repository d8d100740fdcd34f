using System.CommandLine;
using System.Diagnostics;
using Defeat.Samples.Shared;
using Spectre.Console;

namespace Defeat.Samples.Clip;

/// <summary>The sample's command line: options, logging, the progress display, and one clear line (exit code 2) for expected failures.</summary>
public static class ClipSampleCommand
{
    /// <summary>Exit code of a run that failed for a reason the user can fix (<see cref="SampleCommand.UsageError"/>).</summary>
    public const int UsageError = SampleCommand.UsageError;

    /// <summary>Exit code of a cancelled run (<see cref="SampleCommand.Cancelled"/>).</summary>
    public const int Cancelled = SampleCommand.Cancelled;

    /// <summary>Builds the root command.</summary>
    public static RootCommand Create()
    {
        var defaults = new ClipSampleOptions();
        var clip = new Option<string>("--clip") { Description = "CLIP checkpoint: OpenAI TorchScript (ViT-B-32.pt) or state dict, or Hugging Face model.safetensors.", Required = true };
        var tecoa = new Option<string?>("--tecoa") { Description = "TeCoA-style robust image tower (vision_encoder_state_dict) to replace CLIP's image tower." };
        var images = new Option<string?>("--images") { Description = "Image folder with one sub-folder per class (class name = folder name, '_' read as a space)." };
        var split = new Option<string?>("--split") { Description = "CoOp split file (split_zhou_*.json) with train/val/test lists." };
        var imageRoot = new Option<string?>("--image-root") { Description = "Folder the split file's relative image paths start from." };
        var output = new Option<string>("--output") { Description = "Folder for the results table, the plot and checkpoints.", DefaultValueFactory = _ => defaults.Output };
        var shots = new Option<int>("--shots") { Description = "Training images per class (seeded draw).", DefaultValueFactory = _ => defaults.Shots };
        var testPerClass = new Option<int?>("--test-per-class") { Description = "Test images per class (seeded); all when omitted." };
        var epochs = new Option<int>("--epochs") { Description = "Epochs of adversarial prompt tuning.", DefaultValueFactory = _ => defaults.Epochs };
        var batch = new Option<int>("--batch-size") { Description = "Images per training step.", DefaultValueFactory = _ => defaults.BatchSize };
        var steps = new Option<int>("--pgd-steps") { Description = "Steps of the evaluation PGD (the paper: 100).", DefaultValueFactory = _ => defaults.PgdSteps };
        var seed = new Option<int>("--seed") { Description = "Seed of every random choice.", DefaultValueFactory = _ => defaults.Seed };
        var device = new Option<string>("--device") { Description = "cpu, cuda or cuda:N (needs a CUDA build: -p:TorchBackend=cuda-linux).", DefaultValueFactory = _ => defaults.Device };
        var half = new Option<bool>("--half") { Description = "Frozen backbone in half precision (GPU only); trained parts stay float32." };
        var visionHeads = new Option<int?>("--vision-heads") { Description = "Image-tower heads of a custom model (default: width / 64)." };
        var textHeads = new Option<int?>("--text-heads") { Description = "Text-tower heads of a custom model (default: width / 64)." };
        var merges = new Option<string?>("--merges") { Description = "BPE merge list of a custom vocabulary (default: CLIP's)." };
        var threads = new Option<int>("--threads") { Description = "CPU threads for TorchSharp (0: all cores).", DefaultValueFactory = _ => 0 };
        var verbose = new Option<bool>("--verbose") { Description = "Log every epoch and evaluation." };
        var autoAttack = new Option<bool>("--autoattack") { Description = "Also attack every method at the largest radius with the adaptive suite and AutoAttack (APGD-CE, APGD-T, FAB-T, Square) on the images still standing; reports suspected gradient masking." };
        var allowTorchScript = new Option<bool>("--allow-torchscript") { Description = "Accept a TorchScript --clip or --tecoa file (OpenAI's ViT-B-32.pt). It is a program that runs code when loaded: only for files you trust." };

        var root = new RootCommand("DEFEAT (ICLR 2026) on a real CLIP: zero-shot, APT-style, FAP and DEFEAT few-shot prompt tuning, with clean and robust (PGD) accuracy.")
        {
            clip, tecoa, images, split, imageRoot, output, shots, testPerClass, epochs, batch, steps, seed, device, half,
            visionHeads, textHeads, merges, threads, verbose, allowTorchScript, autoAttack,
        };
        root.SetAction((parse, ct) => Task.FromResult(Guarded(() =>
        {
            var options = defaults with
            {
                ClipPath = parse.GetValue(clip)!,
                TeCoAPath = parse.GetValue(tecoa),
                AllowTorchScript = parse.GetValue(allowTorchScript),
                ImageFolder = parse.GetValue(images),
                SplitPath = parse.GetValue(split),
                ImageRoot = parse.GetValue(imageRoot),
                Output = parse.GetValue(output)!,
                Shots = parse.GetValue(shots),
                TestPerClass = parse.GetValue(testPerClass),
                Epochs = parse.GetValue(epochs),
                BatchSize = parse.GetValue(batch),
                PgdSteps = parse.GetValue(steps),
                Seed = parse.GetValue(seed),
                Device = parse.GetValue(device)!,
                Half = parse.GetValue(half),
                VisionHeads = parse.GetValue(visionHeads),
                TextHeads = parse.GetValue(textHeads),
                MergesPath = parse.GetValue(merges),
                AutoAttack = parse.GetValue(autoAttack),
            };
            SampleCommand.SetThreads(parse.GetValue(threads));
            using var loggers = SampleCommand.Loggers(parse.GetValue(verbose));
            var watch = Stopwatch.StartNew();
            var results = SpectreProgress.Run(progress => ClipSampleRunner.Run(options, progress, loggers, ct));
            SampleCommand.PrintResults(results.Reports, $"{results.ClassNames.Count} classes, {options.Shots}-shot", results.PlotPath, results.TablePath);
            AnsiConsole.MarkupLineInterpolated($"{results.TrainImages} training and {results.TestImages} test images on {results.Device}; wall time {watch.Elapsed:hh\\:mm\\:ss}.");
        })));
        return root;
    }

    /// <summary>Runs <paramref name="action"/> as <see cref="SampleCommand.Guarded"/> does, with this sample's own input errors
    /// (<see cref="DatasetException"/>, <see cref="DeviceUnavailableException"/>) among the expected failures.</summary>
    /// <param name="action">The work.</param>
    /// <returns>0, <see cref="UsageError"/> or <see cref="Cancelled"/>.</returns>
    public static int Guarded(Action action) => SampleCommand.Guarded(action, typeof(DatasetException), typeof(DeviceUnavailableException));
}
