using System.Buffers.Binary;
using System.IO.Compression;

namespace Defeat.Clip.Loading;

/// <summary>
/// Walks the opcode stream of a <c>torch.save</c> file's <c>data.pkl</c> before TorchSharp.PyBridge unpickles it,
/// without building anything: refuses a pickle larger than a byte budget, one that would push more values than an
/// object budget, an unknown opcode and a stream that ends without STOP.
/// </summary>
/// <remarks>
/// PyBridge's unpickler (Razorvine.Pickle) runs the stack machine iteratively and executes no Python, but it builds
/// whatever the stream describes: a million empty dicts take a 1 KB file (deflated) and about 285 MB. Every
/// value the machine holds was pushed by one opcode, so counting pushes bounds the objects it can build. Argument
/// sizes follow CPython's <c>pickletools</c> opcode table (protocols 0 to 5).
/// </remarks>
internal static class PickleGuard
{
    /// <summary>Checks the <c>data.pkl</c> that PyBridge will read (the first entry whose name ends with it).</summary>
    public static void Check(string path, long maxBytes, int maxObjects)
    {
        byte[] pickle;
        using (var zip = ZipFile.OpenRead(path))
        {
            var entry = zip.Entries.FirstOrDefault(e => e.Name.EndsWith("data.pkl", StringComparison.Ordinal))
                ?? throw new ClipCheckpointException("The torch.save file has no data.pkl.", path);
            pickle = ReadAtMost(entry, maxBytes, path);
        }
        Scan(pickle, maxObjects, path);
    }

    private static byte[] ReadAtMost(ZipArchiveEntry entry, long maxBytes, string path)
    {
        // Read through the decompressor with our own limit: the entry's declared size may lie.
        using var input = entry.Open();
        using var buffer = new MemoryStream((int)Math.Min(Math.Max(entry.Length, 0), Math.Min(maxBytes, 1 << 26)));
        var chunk = new byte[81920];
        int read;
        while ((read = input.Read(chunk, 0, chunk.Length)) > 0)
        {
            if (buffer.Length + read > maxBytes)
                throw new ClipCheckpointException(
                    $"The torch.save file's {entry.FullName} unpacks to more than {maxBytes} bytes, the limit " +
                    $"(ClipLoadOptions.{nameof(ClipLoadOptions.MaxPickleBytes)}; a ViT-L/14 state dict's pickle is about 56 KB).", path);
            buffer.Write(chunk, 0, read);
        }
        return buffer.ToArray();
    }

    private enum Arg { None, Line, TwoLines, Fixed, Length1, Length4, Length8 }

    private static void Scan(byte[] pickle, int maxObjects, string path)
    {
        long objects = 0;
        int i = 0;
        while (true)
        {
            if (i >= pickle.Length)
                throw new ClipCheckpointException($"The torch.save file's pickle ends at byte {pickle.Length} without a STOP opcode: truncated or damaged.", path);
            int at = i;
            byte op = pickle[i++];
            if (op == (byte)'.') return; // STOP
            var (arg, size, pushes) = Describe(op);
            if (arg == Arg.None && size < 0)
                throw new ClipCheckpointException($"The torch.save file's pickle has an unknown opcode 0x{op:x2} at byte {at}: damaged or not a pickle.", path);
            i = Skip(pickle, i, arg, size, at, path);
            if (pushes && ++objects > maxObjects)
                throw new ClipCheckpointException(
                    $"The torch.save file's pickle would build more than {maxObjects} objects, the limit " +
                    $"(ClipLoadOptions.{nameof(ClipLoadOptions.MaxPickleObjects)}); refused before building any.", path);
        }
    }

    private static int Skip(byte[] pickle, int i, Arg arg, int size, int at, string path)
    {
        long next;
        switch (arg)
        {
            case Arg.None: return i;
            case Arg.Fixed: next = (long)i + size; break;
            case Arg.Line: next = LineEnd(pickle, i, at, path); break;
            case Arg.TwoLines: next = LineEnd(pickle, (int)LineEnd(pickle, i, at, path), at, path); break;
            case Arg.Length1: next = i + 1L + (i < pickle.Length ? pickle[i] : 0); break;
            case Arg.Length4:
                if (i + 4 > pickle.Length) next = long.MaxValue;
                else next = i + 4L + BinaryPrimitives.ReadUInt32LittleEndian(pickle.AsSpan(i, 4));
                break;
            default:
                if (i + 8 > pickle.Length) next = long.MaxValue;
                else
                {
                    ulong length = BinaryPrimitives.ReadUInt64LittleEndian(pickle.AsSpan(i, 8));
                    next = length > (ulong)pickle.Length ? long.MaxValue : i + 8L + (long)length;
                }
                break;
        }
        if (next > pickle.Length)
            throw new ClipCheckpointException($"The torch.save file's pickle is cut inside the argument of the opcode at byte {at}: truncated or damaged.", path);
        return (int)next;
    }

    private static long LineEnd(byte[] pickle, int i, int at, string path)
    {
        int newline = Array.IndexOf(pickle, (byte)'\n', i);
        if (newline < 0)
            throw new ClipCheckpointException($"The torch.save file's pickle is cut inside the argument of the opcode at byte {at}: truncated or damaged.", path);
        return newline + 1L;
    }

    /// <summary>The argument of an opcode, its size for fixed arguments (-1 for an unknown opcode), and whether it pushes a value.</summary>
    private static (Arg Arg, int Size, bool Pushes) Describe(byte op) => op switch
    {
        // Stack and memo bookkeeping: nothing new is pushed (GET and DUP push a reference, which holds a slot).
        (byte)'(' or (byte)'0' or (byte)'1' => (Arg.None, 0, false),        // MARK, POP, POP_MARK
        (byte)'2' => (Arg.None, 0, true),                                    // DUP
        (byte)'g' => (Arg.Line, 0, true),                                    // GET
        (byte)'h' => (Arg.Fixed, 1, true),                                   // BINGET
        (byte)'j' => (Arg.Fixed, 4, true),                                   // LONG_BINGET
        (byte)'p' => (Arg.Line, 0, false),                                   // PUT
        (byte)'q' => (Arg.Fixed, 1, false),                                  // BINPUT
        (byte)'r' => (Arg.Fixed, 4, false),                                  // LONG_BINPUT
        0x94 => (Arg.None, 0, false),                                        // MEMOIZE
        0x80 => (Arg.Fixed, 1, false),                                       // PROTO
        0x95 => (Arg.Fixed, 8, false),                                       // FRAME
        // Filling containers and calling: they pop what earlier opcodes pushed.
        (byte)'a' or (byte)'e' or (byte)'s' or (byte)'u' or 0x90 or (byte)'b' => (Arg.None, 0, false), // APPEND(S), SETITEM(S), ADDITEMS, BUILD
        (byte)'R' or 0x81 or 0x92 or (byte)'o' => (Arg.None, 0, true),       // REDUCE, NEWOBJ, NEWOBJ_EX, OBJ
        (byte)'i' or (byte)'c' => (Arg.TwoLines, 0, true),                   // INST, GLOBAL
        0x93 => (Arg.None, 0, true),                                         // STACK_GLOBAL
        (byte)'P' => (Arg.Line, 0, true),                                    // PERSID
        (byte)'Q' => (Arg.None, 0, true),                                    // BINPERSID
        0x82 => (Arg.Fixed, 1, true),                                        // EXT1
        0x83 => (Arg.Fixed, 2, true),                                        // EXT2
        0x84 => (Arg.Fixed, 4, true),                                        // EXT4
        // Containers.
        (byte)'}' or (byte)']' or (byte)')' or 0x8f => (Arg.None, 0, true),  // EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE, EMPTY_SET
        (byte)'d' or (byte)'l' or (byte)'t' or 0x91 => (Arg.None, 0, true),  // DICT, LIST, TUPLE, FROZENSET
        0x85 or 0x86 or 0x87 => (Arg.None, 0, true),                         // TUPLE1, TUPLE2, TUPLE3
        // Scalars.
        (byte)'N' or 0x88 or 0x89 => (Arg.None, 0, true),                    // NONE, NEWTRUE, NEWFALSE
        (byte)'I' or (byte)'L' or (byte)'F' => (Arg.Line, 0, true),          // INT, LONG, FLOAT
        (byte)'J' => (Arg.Fixed, 4, true),                                   // BININT
        (byte)'K' => (Arg.Fixed, 1, true),                                   // BININT1
        (byte)'M' => (Arg.Fixed, 2, true),                                   // BININT2
        (byte)'G' => (Arg.Fixed, 8, true),                                   // BINFLOAT
        0x8a => (Arg.Length1, 0, true),                                      // LONG1
        0x8b => (Arg.Length4, 0, true),                                      // LONG4
        // Strings and bytes.
        (byte)'S' or (byte)'V' => (Arg.Line, 0, true),                       // STRING, UNICODE
        (byte)'U' or (byte)'C' or 0x8c => (Arg.Length1, 0, true),            // SHORT_BINSTRING, SHORT_BINBYTES, SHORT_BINUNICODE
        (byte)'T' or (byte)'X' or (byte)'B' => (Arg.Length4, 0, true),       // BINSTRING, BINUNICODE, BINBYTES
        0x8d or 0x8e or 0x96 => (Arg.Length8, 0, true),                      // BINUNICODE8, BINBYTES8, BYTEARRAY8
        0x97 => (Arg.None, 0, true),                                         // NEXT_BUFFER
        0x98 => (Arg.None, 0, false),                                        // READONLY_BUFFER
        _ => (Arg.None, -1, false),
    };
}
