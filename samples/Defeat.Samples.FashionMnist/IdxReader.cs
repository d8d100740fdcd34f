using System.Buffers.Binary;
using System.IO.Compression;

namespace Defeat.Samples.FashionMnist;

/// <summary>
/// Reads unsigned-byte IDX files (the format of MNIST and Fashion-MNIST), plain or gzip-compressed.
/// </summary>
/// <remarks>
/// Layout: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then each
/// dimension as a big-endian int32, then the values in row-major order.
/// </remarks>
public static class IdxReader
{
    private const byte UnsignedByte = 0x08;

    /// <summary>Reads a file and returns its dimensions and raw bytes.</summary>
    /// <param name="path">An IDX file; a name ending in <c>.gz</c> is decompressed.</param>
    /// <param name="expectedRank">The number of dimensions the caller needs (3 for images, 1 for labels).</param>
    /// <exception cref="IdxFormatException">Missing, truncated, of another type or rank, with bytes past the end, or with
    /// dimensions whose product overflows or exceeds what the file holds (checked before anything is allocated from it).</exception>
    public static (int[] Shape, byte[] Data) Read(string path, int expectedRank)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentOutOfRangeException.ThrowIfLessThan(expectedRank, 1);
        if (!File.Exists(path))
            throw new IdxFormatException(path, "file not found.");
        try
        {
            using Stream file = File.OpenRead(path);
            using Stream stream = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase)
                ? new GZipStream(file, CompressionMode.Decompress) : file;
            return Read(stream, path, expectedRank);
        }
        catch (InvalidDataException e)
        {
            throw new IdxFormatException(path, "not a valid gzip stream (corrupt or truncated download?).", e);
        }
    }

    private static (int[] Shape, byte[] Data) Read(Stream stream, string path, int expectedRank)
    {
        Span<byte> header = stackalloc byte[4];
        ReadExactly(stream, header, path, "the 4-byte magic number");
        if (header[0] != 0 || header[1] != 0)
            throw new IdxFormatException(path, $"not an IDX file: magic number starts 0x{header[0]:X2}{header[1]:X2}, expected 0x0000.");
        if (header[2] != UnsignedByte)
            throw new IdxFormatException(path, $"element type 0x{header[2]:X2} is not supported; expected 0x08 (unsigned byte).");
        if (header[3] != expectedRank)
            throw new IdxFormatException(path, $"has {header[3]} dimensions; expected {expectedRank}.");

        var shape = new int[expectedRank];
        Span<byte> dim = stackalloc byte[4];
        for (int i = 0; i < expectedRank; i++)
        {
            ReadExactly(stream, dim, path, $"dimension {i}");
            shape[i] = BinaryPrimitives.ReadInt32BigEndian(dim);
            if (shape[i] < 0)
                throw new IdxFormatException(path, $"dimension {i} is {shape[i]}; expected a non-negative size.");
        }
        string shapeText = $"[{string.Join(", ", shape)}]";
        long count = ValueCount(shape, path, shapeText);
        string what = $"{count} values for shape {shapeText}";

        // The header is not trusted with an allocation: a plain file's size is known, so the count is checked
        // against it first; a compressed stream's is not, so its buffer grows only with the bytes actually read.
        byte[] data;
        if (stream.CanSeek)
        {
            long available = stream.Length - stream.Position;
            if (available < count)
                throw new IdxFormatException(path, $"truncated: expected {what} ({count} bytes), got {available}.");
            if (available > count)
                throw new IdxFormatException(path, $"has bytes past the {count} values its header announces ({available} bytes follow the header).");
            data = new byte[count];
            ReadExactly(stream, data, path, what);
        }
        else
        {
            data = ReadAtMost(stream, count);
            if (data.LongLength < count)
                throw new IdxFormatException(path, $"truncated: expected {what} ({count} bytes), got {data.LongLength}.");
        }
        if (stream.ReadByte() != -1)
            throw new IdxFormatException(path, $"has bytes past the {count} values its header announces.");
        return (shape, data);
    }

    // The exact product of the dimensions: 0 if any is 0, otherwise checked for 64-bit overflow and against the
    // largest array (a wrapped product could otherwise match a short or empty file).
    private static long ValueCount(int[] shape, string path, string shapeText)
    {
        if (shape.Contains(0)) return 0;
        long count = 1;
        foreach (var d in shape)
        {
            try { count = checked(count * d); }
            catch (OverflowException)
            {
                throw new IdxFormatException(path, $"dimensions {shapeText} multiply to more than {long.MaxValue} values (64-bit overflow); expected a shape the file can hold.");
            }
        }
        if (count > Array.MaxLength)
            throw new IdxFormatException(path, $"shape {shapeText} holds {count} values, more than one array can hold ({Array.MaxLength}).");
        return count;
    }

    private static byte[] ReadAtMost(Stream stream, long count)
    {
        var buffer = new byte[(int)Math.Min(count, 1 << 20)];
        int filled = 0;
        while (filled < count)
        {
            if (filled == buffer.Length)
                Array.Resize(ref buffer, (int)Math.Min(count, 2L * buffer.Length));
            int n = stream.Read(buffer, filled, buffer.Length - filled);
            if (n == 0) break;
            filled += n;
        }
        if (filled < buffer.Length) Array.Resize(ref buffer, filled);
        return buffer;
    }

    private static void ReadExactly(Stream stream, Span<byte> buffer, string path, string what)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = stream.Read(buffer[total..]);
            if (n == 0)
                throw new IdxFormatException(path, $"truncated: expected {what} ({buffer.Length} bytes), got {total}.");
            total += n;
        }
    }
}
