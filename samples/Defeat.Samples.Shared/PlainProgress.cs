using System.Diagnostics;
using System.Globalization;
using Spectre.Console;

namespace Defeat.Samples.Shared;

/// <summary>
/// Progress for a console that is not interactive (output redirected to a file or a CI log): one plain line per
/// finished stage, <c>done: train DEFEAT (official) 100/100 (epoch 20, loss 1.234) in 12.3 s</c>, instead of a live
/// display. A stage is finished when the next one starts, or when the work ends (<see cref="Dispose"/>).
/// </summary>
/// <param name="console">Where the lines go (plain text, no markup).</param>
public sealed class PlainProgress(IAnsiConsole console) : IProgress<StageProgress>, IDisposable
{
    private readonly Stopwatch _watch = new();
    private StageProgress? _current;

    /// <inheritdoc/>
    public void Report(StageProgress value)
    {
        if (_current is { } current && current.Stage != value.Stage) Finish();
        if (_current is null) _watch.Restart();
        _current = value;
    }

    /// <summary>Prints the line of the stage in progress, if any.</summary>
    public void Dispose() => Finish();

    private void Finish()
    {
        if (_current is not { } stage) return;
        _current = null;
        string message = string.IsNullOrEmpty(stage.Message) ? "" : $" ({stage.Message})";
        console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"done: {stage.Stage} {stage.Done}/{stage.Total}{message} in {_watch.Elapsed.TotalSeconds:F1} s"));
    }
}
