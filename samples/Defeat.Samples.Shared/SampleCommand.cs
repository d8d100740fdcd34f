using Defeat.Checkpoints;
using Defeat.Clip.Loading;
using Defeat.Evaluation;
using Microsoft.Extensions.Logging;
using Spectre.Console;
using static TorchSharp.torch;

namespace Defeat.Samples.Shared;

/// <summary>What both samples' command lines share: exit codes, error handling, logging, threads and the results printout.</summary>
public static class SampleCommand
{
    /// <summary>Exit code of a run that failed for a reason the user can fix (a path, an option, a file, a missing GPU).</summary>
    public const int UsageError = 2;

    /// <summary>Exit code of a cancelled run (Ctrl+C).</summary>
    public const int Cancelled = 130;

    /// <summary>
    /// Runs <paramref name="action"/>. Expected failures print one line and give <see cref="UsageError"/>: bad options
    /// (<see cref="ArgumentException"/>), missing files or folders, unreadable checkpoints (<see cref="ClipCheckpointException"/>,
    /// <see cref="CheckpointException"/>) and the sample's own data errors in <paramref name="sampleErrors"/>. Cancellation
    /// gives <see cref="Cancelled"/>; anything else is a bug and propagates with its stack trace.
    /// </summary>
    /// <param name="action">The work.</param>
    /// <param name="sampleErrors">Exception types of the sample that mean bad input (a data set error, a missing device).</param>
    /// <returns>0, <see cref="UsageError"/> or <see cref="Cancelled"/>.</returns>
    public static int Guarded(Action action, params Type[] sampleErrors)
    {
        ArgumentNullException.ThrowIfNull(action);
        ArgumentNullException.ThrowIfNull(sampleErrors);
        try
        {
            action();
            return 0;
        }
        catch (OperationCanceledException)
        {
            AnsiConsole.MarkupLine("[yellow]Cancelled; each method's last completed epoch is kept in the checkpoints folder (a rerun resumes).[/]");
            return Cancelled;
        }
        catch (Exception e) when (e is ArgumentException or FileNotFoundException or DirectoryNotFoundException or ClipCheckpointException
                                      or CheckpointException || sampleErrors.Any(t => t.IsInstanceOfType(e)))
        {
            AnsiConsole.MarkupLineInterpolated($"[red]error:[/] {e.Message}");
            return UsageError;
        }
    }

    /// <summary>One-line console logs with a time stamp: warnings only, or every epoch and evaluation with <paramref name="verbose"/>.</summary>
    /// <param name="verbose">Log information messages too.</param>
    public static ILoggerFactory Loggers(bool verbose) => LoggerFactory.Create(b => b
        .AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; })
        .SetMinimumLevel(verbose ? LogLevel.Information : LogLevel.Warning));

    /// <summary>Sets TorchSharp's CPU threads; 0 (or less) keeps the default (all cores).</summary>
    /// <param name="threads">Threads to use.</param>
    public static void SetThreads(int threads)
    {
        if (threads > 0) set_num_threads(threads);
    }

    /// <summary>Prints the results tables (<see cref="ResultsTable.Build"/>) and where the plot and the table were written.</summary>
    /// <param name="reports">One report per method.</param>
    /// <param name="dataset">What the results table's title names.</param>
    /// <param name="plotPath">The PNG written.</param>
    /// <param name="tablePath">The markdown table written.</param>
    public static void PrintResults(IReadOnlyList<RobustnessReport> reports, string dataset, string plotPath, string tablePath)
    {
        foreach (var table in ResultsTable.Build(reports, dataset)) AnsiConsole.Write(table);
        foreach (var line in ResultsTable.MaskingNotes(reports).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            AnsiConsole.MarkupLine(line.Contains("gradient masking suspected", StringComparison.Ordinal)
                ? $"[red]{Markup.Escape(line)}[/]" : Markup.Escape(line));
        AnsiConsole.MarkupLineInterpolated($"Plot: [bold]{plotPath}[/]   Table: [bold]{tablePath}[/]");
    }
}
