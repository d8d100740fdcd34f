using System.CommandLine;
using System.Globalization;
using Defeat.Clip;
using Defeat.Data;
using Defeat.Prompting;
using Defeat.Samples.Shared;
using Defeat.Samples.Shared.Study;
using Microsoft.Extensions.Logging;
using Spectre.Console;
using FashionMnistData = Defeat.Samples.FashionMnist.FashionMnist;

namespace Defeat.Samples.FashionMnist;

/// <summary>
/// <c>study</c>: the multi-seed ablation study on Fashion-MNIST (<see cref="StudyRunner"/>), its summary, and the
/// list of configurations. Screening and final runs differ only in <c>--protocol</c>, seeds and configurations.
/// </summary>
public static class StudyCommand
{
    /// <summary>Builds the command; <paramref name="run"/> wraps each action (error handling, threads, loggers).</summary>
    /// <param name="dataOption">The data folder option shared with the other commands.</param>
    /// <param name="backboneOption">The backbone option shared with the default run.</param>
    /// <param name="threadsOption">TorchSharp threads.</param>
    /// <param name="verboseOption">Log level.</param>
    /// <param name="run">Runs an action with the parsed verbosity and thread count.</param>
    public static Command Create(Option<string?> dataOption, Option<string?> backboneOption, Option<int> threadsOption, Option<bool> verboseOption,
        Func<ParseResult, Action<ILoggerFactory>, int> run)
    {
        var output = new Option<string>("--output") { Description = "Study folder (cells/, checkpoints/, summary.md); many machines may share it.", DefaultValueFactory = _ => "runs/study" };
        var configs = new Option<string>("--configs") { Description = "Comma-separated configuration names (see `study list`); the baseline `apt` is needed for paired comparisons.", DefaultValueFactory = _ => "zero-shot,apt,official,kmeans-dead" };
        var seeds = new Option<string>("--seeds") { Description = "Comma-separated seeds.", DefaultValueFactory = _ => "1" };
        var protocol = new Option<string>("--protocol") { Description = "screen (PGD-20, screening suite), final (PGD-100, screening suite, survivors only) or autoattack (AutoAttack then PGD-100 at 4/255 on 500 images, survivors only).", DefaultValueFactory = _ => "screen" };
        var shard = new Option<string>("--shard") { Description = "Run only shard I of N (every N-th cell), e.g. 2/8 for a job array.", DefaultValueFactory = _ => "1/1" };
        var testPerClass = new Option<int?>("--test-per-class") { Description = "Override the test images per class (default 100: 1,000 images)." };
        var pgdSteps = new Option<int?>("--pgd-steps") { Description = "Override the steps of every PGD of the suite." };
        var epochs = new Option<int?>("--epochs") { Description = "Override the protocol's epochs (configurations with their own schedule keep it)." };

        var runCommand = new Command("run", "Train and evaluate every (configuration, seed) cell that has no result file yet, then print the summary.")
        {
            dataOption, backboneOption, output, configs, seeds, protocol, shard, testPerClass, pgdSteps, epochs, threadsOption, verboseOption,
        };
        runCommand.SetAction((parse, ct) => Task.FromResult(run(parse, loggers =>
        {
            var chosen = StudyConfigurations.Find(Split(parse.GetValue(configs)!));
            var seedList = Split(parse.GetValue(seeds)!).Select(s => ParseInt(s, "--seeds")).ToList();
            var (i, n) = ParseShard(parse.GetValue(shard)!);
            var settings = parse.GetValue(protocol) switch
            {
                "screen" => StudyProtocol.Screening(),
                "final" => StudyProtocol.Final(),
                "autoattack" => StudyProtocol.AutoAttackCheck(),
                var other => throw new ArgumentException($"--protocol must be screen, final or autoattack, got \"{other}\".", "--protocol"),
            };
            if (parse.GetValue(testPerClass) is { } perClass) settings = settings with { TestPerClass = perClass };
            if (parse.GetValue(pgdSteps) is { } steps) settings = settings with { PgdSteps = steps };
            if (parse.GetValue(epochs) is { } e) settings = settings with { Epochs = e };
            settings.Validate();
            string folder = parse.GetValue(output)!;

            string dataDir = FashionMnistData.Locate(parse.GetValue(dataOption));
            using var train = FashionMnistData.Load(dataDir, train: true);
            using var test = FashionMnistData.Load(dataDir, train: false);
            using var backbone = LoadBackbone(parse.GetValue(backboneOption), loggers);
            var classes = train.ClassNames;
            using var testSet = test.Subset(FewShotSplit.Stratified(test.LabelArray(), classes.Count, settings.TestPerClass, settings.TestSeed));
            var reserve = Experiment.ReserveSplit(train).FewShot;
            var trainLabels = train.LabelArray();
            var reserveLabels = reserve.Select(r => trainLabels[r]).ToArray();
            LabeledImages FewShot(int seed, int shots) =>
                train.Subset(FewShotSplit.Draw(reserveLabels, classes.Count, shots, seed).FewShot.Select(r => reserve[(int)r]).ToList());

            var runner = new StudyRunner(settings, backbone, classes, FewShot, testSet,
                seed => new PromptLearnerOptions { Seed = (ulong)seed }, folder, loggers);
            var cells = StudyRunner.Plan(chosen, seedList, i, n);
            AnsiConsole.MarkupLineInterpolated($"Study in [bold]{folder}[/]: {cells.Count} cells in shard {i}/{n}; protocol {settings.Fingerprint()}");
            int ran = SpectreProgress.Run(progress => runner.Run(cells, progress, ct));
            AnsiConsole.MarkupLineInterpolated($"{ran} cells run, {cells.Count - ran - runner.Diverged.Count} found done, {runner.Diverged.Count} diverged.");
            foreach (var (config, seed, reason) in runner.Diverged)
                AnsiConsole.MarkupLineInterpolated($"[yellow]{config} seed {seed} diverged (no cell; recorded as {config}--seed{seed}.diverged):[/] {reason}");
            WriteSummary(runner.CellFolder, folder);
        })));

        var summaryCommand = new Command("summary", "Summarise whatever cell files the study folder holds (any shards, any machines).") { output, verboseOption, threadsOption };
        summaryCommand.SetAction((parse, ct) => Task.FromResult(run(parse, _ =>
        {
            string folder = parse.GetValue(output)!;
            WriteSummary(Path.Combine(folder, "cells"), folder);
        })));

        var listCommand = new Command("list", "List the configurations a study can name.");
        listCommand.SetAction(_ =>
        {
            var table = new Table().AddColumn("name").AddColumn("what it is");
            foreach (var c in StudyConfigurations.All) table.AddRow(Markup.Escape(c.Name), Markup.Escape(c.Description));
            AnsiConsole.Write(table);
            return 0;
        });

        return new Command("study", "The multi-seed ablation study: cells of (configuration, seed), resumable and shardable, with a paired summary.")
        {
            runCommand, summaryCommand, listCommand,
        };
    }

    private static void WriteSummary(string cellFolder, string folder)
    {
        var cells = StudyCell.LoadAll(cellFolder);
        var diverged = DivergedCell.LoadAll(cellFolder);
        var summary = StudySummary.FromCells(cells, StudyConfigurations.Baseline, diverged);
        // Paired with the frozen backbone too: a baseline that failed on one seed makes any gain against it look large.
        var versusBackbone = cells.Any(c => c.Configuration == StudyConfigurations.Backbone)
            ? StudySummary.FromCells(cells, StudyConfigurations.Backbone, diverged)
            : null;
        string markdown = summary.Markdown(versusBackbone);
        string path = Path.Combine(folder, "summary.md");
        Defeat.Checkpoints.AtomicFile.WriteAllText(path, markdown);
        Console.Out.WriteLine(markdown); // plain: markdown must not be wrapped at the console width
        AnsiConsole.MarkupLineInterpolated($"Summary: [bold]{path}[/]");
    }

    private static ClipModel LoadBackbone(string? path, ILoggerFactory loggers)
    {
        path ??= Path.Combine(AppContext.BaseDirectory, "backbone", "fashion-mnist-clip.safetensors");
        if (!File.Exists(path))
            throw new ArgumentException($"No backbone at {path}; the study needs the shipped backbone or --backbone.", "--backbone");
        return Defeat.Clip.Loading.ClipLoader.Load(path, logger: loggers.CreateLogger("backbone"));
    }

    private static string[] Split(string list) => list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static int ParseInt(string text, string option) =>
        int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) ? value
            : throw new ArgumentException($"{option} expects integers, got \"{text}\".", option);

    /// <summary>Parses "I/N" (1-based).</summary>
    public static (int Shard, int Shards) ParseShard(string text)
    {
        var parts = text.Split('/');
        if (parts.Length != 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var i)
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n < 1 || i < 1 || i > n)
            throw new ArgumentException($"--shard expects I/N with 1 <= I <= N, got \"{text}\".", "--shard");
        return (i, n);
    }
}
