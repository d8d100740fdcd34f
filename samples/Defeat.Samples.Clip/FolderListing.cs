namespace Defeat.Samples.Clip;

/// <summary>
/// Walks class folders for <see cref="ImageFileDataset.FromFolder"/> without trusting links: folders are visited once by
/// their real path (every link resolved), links to folders are followed only on request, and a file reached twice is
/// listed once. One listing spans all class folders of a data set.
/// </summary>
internal sealed class FolderListing(bool followLinks)
{
    // As the kernel's ELOOP limit: a chain of more links than this is taken for a loop.
    private const int MaxLinks = 40;

    private static readonly StringComparer PathComparer =
        OperatingSystem.IsWindows() || OperatingSystem.IsMacOS() ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal;

    private readonly HashSet<string> _folders = new(PathComparer);
    private readonly HashSet<string> _files = new(PathComparer);

    /// <summary>Image files under <paramref name="folder"/> not listed before, walking sub-folders in ordinal order.</summary>
    public List<string> Images(string folder)
    {
        var found = new List<string>();
        var pending = new Stack<(string Path, string Real)>();
        pending.Push((folder, RealPath(folder)));
        while (pending.Count > 0)
        {
            var (dir, real) = pending.Pop();
            if (!_folders.Add(real)) continue;
            List<FileSystemInfo> entries;
            try
            {
                entries = new DirectoryInfo(dir).EnumerateFileSystemInfos().OrderBy(e => e.Name, StringComparer.Ordinal).ToList();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new DatasetException(dir, $"cannot be listed: {e.Message}", e);
            }
            var subfolders = new List<(string, string)>();
            foreach (var entry in entries)
            {
                bool link = entry.LinkTarget is not null;
                if (entry is DirectoryInfo || (link && Directory.Exists(entry.FullName)))
                {
                    if (!link) subfolders.Add((entry.FullName, Path.Combine(real, entry.Name)));
                    else if (followLinks) subfolders.Add((entry.FullName, RealPath(entry.FullName)));
                    continue;
                }
                if (!ImageFileDataset.ImageExtensions.Contains(Path.GetExtension(entry.Name))) continue;
                string realFile = link ? RealPath(entry.FullName) : Path.Combine(real, entry.Name);
                if (_files.Add(realFile)) found.Add(entry.FullName);
            }
            for (int i = subfolders.Count - 1; i >= 0; i--) pending.Push(subfolders[i]);
        }
        return found;
    }

    /// <summary>The path with every symbolic link in it resolved, component by component, as POSIX <c>realpath</c>.</summary>
    /// <exception cref="DatasetException">More than 40 links on the way (a loop of links).</exception>
    public static string RealPath(string path)
    {
        string full = Path.GetFullPath(path);
        string current = Path.GetPathRoot(full)!;
        var pending = new Stack<string>(Components(full[current.Length..]).Reverse());
        int links = 0;
        while (pending.Count > 0)
        {
            string part = pending.Pop();
            if (part == ".") continue;
            if (part == "..")
            {
                current = Path.GetDirectoryName(current) ?? current;
                continue;
            }
            string next = Path.Combine(current, part);
            string? target = new FileInfo(next).LinkTarget;
            if (target is null)
            {
                current = next;
                continue;
            }
            if (++links > MaxLinks)
                throw new DatasetException(path, $"more than {MaxLinks} symbolic links to resolve (a loop of links?); expected links that end in a file or folder.");
            string rest = target;
            if (Path.IsPathRooted(target))
            {
                current = Path.GetPathRoot(target)!;
                rest = target[current.Length..];
            }
            foreach (var p in Components(rest).Reverse()) pending.Push(p);
        }
        return current;
    }

    private static string[] Components(string path) =>
        path.Split([Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar], StringSplitOptions.RemoveEmptyEntries);
}
