using System.Diagnostics;
using System.Text;

namespace Defeat.Tests.Samples.Packaging;

/// <summary>Runs a command line tool with a timeout and keeps everything it wrote, for assertion messages.</summary>
internal static class ProcessRunner
{
    /// <summary>The result of one run: exit code and the interleaved standard output and error.</summary>
    internal sealed record Result(string CommandLine, int ExitCode, string Output)
    {
        /// <summary>A message for a failed assertion: the command, its exit code and its output.</summary>
        public string Describe() => $"`{CommandLine}` exited with {ExitCode}. Output:\n{Output}";
    }

    /// <summary>Runs <paramref name="fileName"/> with <paramref name="arguments"/> in <paramref name="workingDirectory"/>;
    /// kills the whole process tree and throws <see cref="TimeoutException"/> (with the output so far) after
    /// <paramref name="timeout"/>.</summary>
    public static Result Run(string fileName, IReadOnlyList<string> arguments, string workingDirectory, TimeSpan timeout,
        IReadOnlyDictionary<string, string?>? environment = null)
    {
        var info = new ProcessStartInfo(fileName)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in arguments) info.ArgumentList.Add(a);
        // The test host runs under `dotnet test`, whose MSBuild variables would steer a nested dotnet into the
        // outer build's SDK state; a child build starts clean.
        foreach (var key in info.Environment.Keys.ToList())
            if (key.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase) || key.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase))
                info.Environment.Remove(key);
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        info.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
        // No MSBuild worker nodes or server outlive the command (they would hold its output pipes open).
        info.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        info.Environment["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0";
        if (environment is not null)
            foreach (var (key, value) in environment) info.Environment[key] = value;

        var output = new StringBuilder();
        using var outDone = new ManualResetEventSlim();
        using var errDone = new ManualResetEventSlim();
        using var process = new Process { StartInfo = info };
        process.OutputDataReceived += (_, e) => { if (e.Data is null) outDone.Set(); else lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is null) errDone.Set(); else lock (output) output.AppendLine(e.Data); };
        var commandLine = fileName + " " + string.Join(' ', arguments);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(timeout))
        {
            try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { /* it ended meanwhile */ }
            process.WaitForExit(5000);
            lock (output)
                throw new TimeoutException($"`{commandLine}` did not finish within {timeout.TotalSeconds:F0} s. Output so far:\n{output}");
        }
        // A grandchild (e.g. the compiler server) may still hold the pipes; the output it could add is not ours to wait for.
        outDone.Wait(TimeSpan.FromSeconds(10));
        errDone.Wait(TimeSpan.FromSeconds(10));
        lock (output) return new Result(commandLine, process.ExitCode, output.ToString());
    }
}
