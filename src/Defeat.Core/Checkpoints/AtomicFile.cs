using System.Globalization;

namespace Defeat.Checkpoints;

/// <summary>
/// The library's one way to write a file: under a temporary name in the destination's folder, then renamed over the
/// destination. A reader sees the old file or the complete new one, never part of one; a crash or a kill leaves at
/// most a temporary file (<see cref="TempPath"/>), which the next write of the same file replaces.
/// </summary>
/// <remarks>One writer per destination at a time (the temporary name is fixed per process).</remarks>
public static class AtomicFile
{
    /// <summary>
    /// The temporary name <see cref="Write"/> uses for <paramref name="path"/>: the same folder and extension, with
    /// <c>.tmp-{process id}</c> before the extension (<c>results.md</c> gives <c>results.tmp-4242.md</c>), so writers
    /// that choose a format by extension still see the right one.
    /// </summary>
    /// <param name="path">The destination.</param>
    public static string TempPath(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var full = Path.GetFullPath(path);
        var id = Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        return Path.Combine(Path.GetDirectoryName(full)!, $"{Path.GetFileNameWithoutExtension(full)}.tmp-{id}{Path.GetExtension(full)}");
    }

    /// <summary>Calls <paramref name="write"/> with the temporary path, then renames the file over <paramref name="path"/>.
    /// When <paramref name="write"/> throws, the temporary file is removed and <paramref name="path"/> is untouched.</summary>
    /// <param name="path">The destination; its folder must exist.</param>
    /// <param name="write">Writes the whole file to the path it is given.</param>
    public static void Write(string path, Action<string> write)
    {
        ArgumentNullException.ThrowIfNull(write);
        var temp = TempPath(path);
        try
        {
            if (File.Exists(temp)) File.Delete(temp); // left by an earlier writer that was killed
            write(temp);
            File.Move(temp, Path.GetFullPath(path), overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    /// <summary>Writes <paramref name="text"/> (UTF-8) to <paramref name="path"/> as <see cref="Write"/> does.</summary>
    /// <param name="path">The destination; its folder must exist.</param>
    /// <param name="text">The whole content.</param>
    public static void WriteAllText(string path, string text) => Write(path, temp => File.WriteAllText(temp, text));
}
