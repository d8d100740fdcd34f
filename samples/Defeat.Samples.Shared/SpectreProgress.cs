using Spectre.Console;

namespace Defeat.Samples.Shared;

/// <summary>Shows each stage of the sample as a row of a Spectre.Console progress display.</summary>
/// <remarks>Reports arrive on the worker's own thread (the sample runs one stage at a time), so no locking is needed beyond Spectre's.</remarks>
public sealed class SpectreProgress(ProgressContext context) : IProgress<StageProgress>
{
    private readonly Dictionary<string, ProgressTask> _tasks = [];

    /// <inheritdoc/>
    public void Report(StageProgress value)
    {
        if (!_tasks.TryGetValue(value.Stage, out var task))
        {
            task = context.AddTask(Markup.Escape(value.Stage), maxValue: Math.Max(1, value.Total));
            _tasks[value.Stage] = task;
        }
        task.MaxValue = Math.Max(1, value.Total);
        task.Value = value.Done;
        task.Description = Markup.Escape(string.IsNullOrEmpty(value.Message) ? value.Stage : $"{value.Stage} ({value.Message})");
        context.Refresh();
    }

    /// <summary>
    /// Runs <paramref name="work"/> under a live progress display with the usual columns when the console is
    /// interactive; otherwise (output redirected to a file or a CI log) with <see cref="PlainProgress"/>, which prints one
    /// plain line per finished stage instead of redrawing every task line on each refresh.
    /// </summary>
    /// <param name="work">The work; it reports each stage's progress.</param>
    /// <param name="console">The console; <see cref="AnsiConsole.Console"/> when null.</param>
    public static T Run<T>(Func<IProgress<StageProgress>, T> work, IAnsiConsole? console = null)
    {
        ArgumentNullException.ThrowIfNull(work);
        console ??= AnsiConsole.Console;
        if (!console.Profile.Capabilities.Interactive)
        {
            using var plain = new PlainProgress(console);
            return work(plain);
        }
        return console.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(),
                new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx => work(new SpectreProgress(ctx)));
    }
}
