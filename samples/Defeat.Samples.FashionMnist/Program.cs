using System.CommandLine;
using System.Diagnostics;
using Defeat.Clip;
using Defeat.Clip.Loading;
using Defeat.Data;
using Defeat.Samples.FashionMnist;
using Defeat.Samples.Shared;
using Microsoft.Extensions.Logging;
using Spectre.Console;
using static TorchSharp.torch;

// DEFEAT on Fashion-MNIST: the whole method end to end on a CPU.
//   dotnet run -c Release --project samples/Defeat.Samples.FashionMnist            (default run, < 10 min)
//   dotnet run -c Release --project samples/Defeat.Samples.FashionMnist -- --full  (the documented reproduction)
//   dotnet run -c Release --project samples/Defeat.Samples.FashionMnist -- pretrain (remake the shipped backbone)

var dataOption = new Option<string?>("--data") { Description = $"Folder with the Fashion-MNIST IDX files (else ${FashionMnist.DirectoryVariable}, else {FashionMnist.DebianDirectory})." };
var seedOption = new Option<int>("--seed") { Description = "Seed of every random choice.", DefaultValueFactory = _ => 1 };
var outputOption = new Option<string>("--output") { Description = "Folder for the results table, the plot and checkpoints.", DefaultValueFactory = _ => "runs/fashion-mnist" };
var backboneOption = new Option<string?>("--backbone") { Description = "CLIP checkpoint to start from (default: the backbone shipped with this sample; built at quick settings when missing)." };
var fullOption = new Option<bool>("--full") { Description = "The documented reproduction: 30 test images per class, PGD-100, longer curves, adaptive attacks and sanity checks." };
var threadsOption = new Option<int>("--threads") { Description = "CPU threads for TorchSharp (0: all cores).", DefaultValueFactory = _ => 0 };
var verboseOption = new Option<bool>("--verbose") { Description = "Log every epoch." };
var epochsOption = new Option<int?>("--epochs") { Description = "Override the epochs of prompt tuning." };
var testOption = new Option<int?>("--test-per-class") { Description = "Override the test images per class." };
var stepsOption = new Option<int?>("--pgd-steps") { Description = "Override the steps of the evaluation PGD." };
var lrOption = new Option<double?>("--lr") { Description = "Override the SGD learning rate of prompt tuning." };
var autoAttackOption = new Option<bool>("--autoattack") { Description = "Also run AutoAttack (APGD-CE, APGD-T, FAB-T, Square) before the adaptive attacks, each attack on the images still standing; reports suspected gradient masking (implies --adaptive)." };
var adaptiveOption = new Option<bool>("--adaptive") { Description = "Also run the attacks that know the defence and the sanity checks (on with --full)." };

var root = new RootCommand("DEFEAT (ICLR 2026) on Fashion-MNIST: zero-shot, APT-style, FAP and DEFEAT prompt tuning of a small CLIP, with clean and robust accuracy.")
{
    dataOption, seedOption, outputOption, backboneOption, fullOption, threadsOption, verboseOption, epochsOption, testOption, stepsOption, lrOption, adaptiveOption, autoAttackOption,
};

var quickOption = new Option<bool>("--quick") { Description = "Minutes instead of the full pre-training schedule." };
var pretrainOutput = new Option<string>("--output") { Description = "Where to write the backbone (fp16 safetensors).", DefaultValueFactory = _ => "backbone/fashion-mnist-clip.safetensors" };
var pretrain = new Command("pretrain", "Pre-train the sample's small CLIP (contrastive image-caption training, then TeCoA adversarial fine-tuning) on Fashion-MNIST training images that are not in any few-shot set.")
{
    dataOption, seedOption, pretrainOutput, quickOption, threadsOption, verboseOption,
};
root.Add(pretrain);
root.Add(StudyCommand.Create(dataOption, backboneOption, threadsOption, verboseOption, (parse, action) => Guarded(() =>
{
    using var loggers = SampleCommand.Loggers(parse.GetValue(verboseOption));
    SampleCommand.SetThreads(parse.GetValue(threadsOption));
    action(loggers);
})));

pretrain.SetAction((parse, ct) => Task.FromResult(Guarded(() =>
{
    using var loggers = SampleCommand.Loggers(parse.GetValue(verboseOption));
    SampleCommand.SetThreads(parse.GetValue(threadsOption));
    var settings = (parse.GetValue(quickOption) ? BackboneSettings.Quick() : new BackboneSettings()) with { Seed = parse.GetValue(seedOption) };
    using var train = FashionMnist.Load(FashionMnist.Locate(parse.GetValue(dataOption)), train: true);
    var watch = Stopwatch.StartNew();
    using var model = BuildBackbone(train, settings, loggers, ct);
    string output = parse.GetValue(pretrainOutput)!;
    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
    ClipLoader.Save(model, output, ScalarType.Float16);
    AnsiConsole.MarkupLineInterpolated($"Backbone written to [bold]{output}[/] in {watch.Elapsed:mm\\:ss}.");
})));

root.SetAction((parse, ct) => Task.FromResult(Guarded(() =>
{
    using var loggers = SampleCommand.Loggers(parse.GetValue(verboseOption));
    SampleCommand.SetThreads(parse.GetValue(threadsOption));
    var settings = (parse.GetValue(fullOption) ? ExperimentSettings.Full() : new ExperimentSettings()) with { Seed = parse.GetValue(seedOption) };
    if (parse.GetValue(epochsOption) is { } epochs) settings = settings with { Epochs = epochs };
    if (parse.GetValue(testOption) is { } perClass) settings = settings with { TestPerClass = perClass };
    if (parse.GetValue(stepsOption) is { } steps) settings = settings with { PgdSteps = steps };
    if (parse.GetValue(lrOption) is { } lr) settings = settings with { LearningRate = lr };
    if (parse.GetValue(adaptiveOption)) settings = settings with { Adaptive = true };
    if (parse.GetValue(autoAttackOption)) settings = settings with { AutoAttack = true };
    settings.Validate();
    string output = parse.GetValue(outputOption)!;
    Directory.CreateDirectory(output);
    var watch = Stopwatch.StartNew();

    string dataDir = FashionMnist.Locate(parse.GetValue(dataOption));
    using var train = FashionMnist.Load(dataDir, train: true);
    using var test = FashionMnist.Load(dataDir, train: false);
    using var model = LoadOrBuildBackbone(parse.GetValue(backboneOption), train, output, loggers, ct);
    var results = new Experiment(settings, loggers).Run(model, train, test, output, ct);

    SampleCommand.PrintResults(results.Reports, "Fashion-MNIST, few-shot", results.PlotPath, results.TablePath);
    AnsiConsole.MarkupLineInterpolated($"Wall time {watch.Elapsed:mm\\:ss} on {Environment.ProcessorCount} cores ({get_num_threads()} TorchSharp threads).");
})));

return await root.Parse(args).InvokeAsync();

static ClipModel LoadOrBuildBackbone(string? path, LabeledImages train, string output, ILoggerFactory loggers, CancellationToken ct)
{
    var log = loggers.CreateLogger("backbone");
    path ??= Path.Combine(AppContext.BaseDirectory, "backbone", "fashion-mnist-clip.safetensors");
    if (File.Exists(path))
        return ClipLoader.Load(path, logger: log);
    AnsiConsole.MarkupLineInterpolated($"[yellow]No backbone at {path}: building one at quick settings (run `pretrain` for the full one).[/]");
    var model = BuildBackbone(train, BackboneSettings.Quick(), loggers, ct);
    string built = Path.Combine(output, "fashion-mnist-clip-quick.safetensors");
    ClipLoader.Save(model, built, ScalarType.Float16);
    log.LogInformation("Quick backbone saved to {Path}", built);
    return model;
}

static ClipModel BuildBackbone(LabeledImages train, BackboneSettings settings, ILoggerFactory loggers, CancellationToken ct)
{
    // The backbone never sees the reserve that every run's few-shot set is drawn from.
    using var pool = train.Subset(Experiment.ReserveSplit(train).Rest);
    return SpectreProgress.Run(progress => new BackboneBuilder(settings, loggers.CreateLogger<BackboneBuilder>()).Build(pool, progress, ct));
}

// Expected failures (missing data, bad files) get one clear line, not a stack trace.
static int Guarded(Action action) => SampleCommand.Guarded(action, typeof(IdxFormatException), typeof(InvalidDataException));
