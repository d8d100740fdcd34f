using System.Text;

namespace Defeat.Clip.Tokenization;

/// <summary>
/// ftfy's mojibake detector: the "badness" heuristic (sequences of characters that are far likelier to be UTF-8
/// read with the wrong code page than intended text) and the UTF-8 clue runs that <c>decode_inconsistent_utf8</c> fixes.
/// </summary>
internal static class Badness
{
    private enum Kind { Set, Space, Word, AnyButNewline, NotAsciiLetter }

    // One character of a rule: a set of categories and/or literal characters, or one of Python's classes.
    private readonly record struct Step(CharFlags Flags, string Chars, Kind Kind = Kind.Set)
    {
        public static implicit operator Step(CharFlags flags) => new(flags, "");
        public static implicit operator Step(string chars) => new(CharFlags.None, chars);
    }

    private sealed record Rule(bool AtStart, params Step[] Steps);

    private const string Lower = "abcdefghijklmnopqrstuvwxyz";
    private const string Letters = Lower + "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

    // Abbreviations for ftfy's character categories.
    private const CharFlags LA = CharFlags.LowerAccented, UA = CharFlags.UpperAccented, Box = CharFlags.Box,
        SP = CharFlags.StartPunct, EP = CharFlags.EndPunct, Cur = CharFlags.Currency, Num = CharFlags.Numeric,
        Law = CharFlags.Law, Bad = CharFlags.Bad, C1 = CharFlags.C1;

    private static readonly Step WhiteSpace = new(CharFlags.None, "", Kind.Space);

    // The juxtapositions ftfy 6 counts as mojibake, each a sequence of single characters.
    private static readonly Rule[] Rules =
    [
        new(false, C1),
        new(false, Bad | LA | UA | Box | SP | EP | Cur | Num | Law, Bad),
        new(false, Letters, CharFlags.LowerCommon | CharFlags.UpperCommon, Bad),
        new(false, Bad, LA | UA | Box | SP | EP | Cur | Num | Law),
        new(false, LA | CharFlags.LowerCommon | Box | EP | Cur | Num, UA),
        new(false, Box | EP | Cur | Num, LA),
        new(false, LA | Box | EP, Cur),
        new(false, WhiteSpace, UA, Cur),
        new(false, UA | Box, Num | Law),
        new(false, LA | UA | Box | Cur | EP, SP, Num),
        new(false, LA | UA | Cur | Num | Box | Law, EP, SP),
        new(false, Cur | Num | Box, SP),
        new(false, Lower, UA, SP | Cur),
        new(false, Box, CharFlags.Kaomoji),
        new(false, LA | UA | Cur | Num | SP | EP | Law, Box),
        new(false, Box, EP),
        new(false, LA | UA, SP | EP, new Step(CharFlags.None, "", Kind.Word)),
        new(false, "\u0152\u0153", new Step(CharFlags.None, "", Kind.NotAsciiLetter)),
        new(false, UA, "\u00B0"),
        new(false, "\u00C2\u00C3\u00CE\u00D0",
            new Step(SP | EP, "\u20AC\u0153\u0160\u0161\u00A2\u00A3\u0178\u017E\u00A0\u00AD\u00AE\u00A9\u00B0\u00B7\u00BB\u2013\u2014\u00B4")),
        new(false, "\u00D7", "\u00B2\u00B3"),
        new(false, "\u00D8\u00D9", ArabicFollower(), "\u00D8\u00D9", ArabicFollower()),
        new(false, "\u00E0", "\u00B2\u00B5\u00B9\u00BC\u00BD\u00BE"),
        new(false, "\u221A", "\u00B1\u2202\u2020\u2260\u00AE\u2122\u00B4\u2264\u2265\u00A5\u00B5\u00F8"),
        new(false, "\u2248", "\u00B0\u00A2"),
        new(false, "\u201A", "\u00C4", "\u00EC\u00EE\u00EF\u00F2\u00F4\u00FA\u00F9\u00FB\u2020\u00B0\u00A2\u03C0"),
        new(false, "\u201A", "\u00E2\u00F3", "\u00E0\u00E4\u00B0\u00EA"),
        new(false, "\u0432", "\u0402"),
        new(false, "\u0412\u0413\u0420\u0421", new Step(C1 | Bad | SP | EP | Cur, "\u00B0\u00B5"), "\u0412\u0413\u0420\u0421"),
        new(false, "\u0413", "\u045E", "\u0412", "\u0402", "\u0412", new Step(CharFlags.None, "", Kind.AnyButNewline), Letters + " "),
        new(false, "\u00C3", "\u00A0\u00A1"),
        new(false, Lower, "\u00C3\u00C2", " "),
        new(false, Lower, WhiteSpace, "\u00C3\u00C2", " "),
        new(true, "\u00C3\u00C2", " "),
        new(false, new Step(EP, Lower + ".,?!"), "\u00C2", new Step(SP | EP, " ")),
        new(false, "\u03B2", "\u20AC", "\u2122\u00A0\u0386\u00AD\u00AE\u00B0"),
        new(false, "\u0392\u0393\u039E\u039F", new Step(C1 | Bad | SP | EP | Cur, "\u00B0"), "\u0392\u0393\u039E\u039F"),
        new(false, "\u0101", "\u20AC"),
    ];

    private static Step ArabicFollower() =>
        new(CharFlags.Common | Cur | Bad | Num | SP, "\u0178\u0160\u00AE\u00B0\u00B5\u00BB");

    // Which rules can start at a character: a bit per rule, tabled below U+2600 (where nearly all of ftfy's
    // characters are) and computed above it, after a quick test against the union of all first steps.
    private const int TabledLimit = 0x2600;
    private static readonly ulong[] StartTable = BuildStartTable();
    private static readonly CharFlags FirstFlags = Rules.Aggregate(CharFlags.PySpace, (f, r) => f | r.Steps[0].Flags);
    private static readonly System.Buffers.SearchValues<char> FirstChars =
        System.Buffers.SearchValues.Create(string.Concat(Rules.Select(r => r.Steps[0].Chars)));

    private static ulong[] BuildStartTable()
    {
        if (Rules.Length > 64) throw new InvalidOperationException("more badness rules than bits in the start mask");
        var table = new ulong[TabledLimit];
        for (int c = 0; c < TabledLimit; c++) table[c] = ComputeStartRules((char)c);
        return table;
    }

    private static ulong ComputeStartRules(char c)
    {
        ulong mask = 0;
        for (int r = 0; r < Rules.Length; r++)
            if (StepMatches(Rules[r].Steps[0], c)) mask |= 1UL << r;
        return mask;
    }

    private static ulong StartRules(char c)
    {
        if (c < TabledLimit) return StartTable[c];
        if ((TextCharData.Of(c) & FirstFlags) == 0 && !FirstChars.Contains(c)) return 0;
        return ComputeStartRules(c);
    }

    /// <summary>ftfy's <c>is_bad</c>: whether any mojibake-like sequence occurs in the text.</summary>
    internal static bool IsBad(string text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            ulong rules = StartRules(text[i]);
            while (rules != 0)
            {
                int r = System.Numerics.BitOperations.TrailingZeroCount(rules);
                rules &= rules - 1;
                var rule = Rules[r];
                if (rule.AtStart && i > 0) continue;
                // The first step matched text[i], a BMP character that is not a surrogate.
                if (MatchesFrom(text, i + 1, rule.Steps)) return true;
            }
        }
        return false;
    }

    private static bool StepMatches(in Step step, char c) => step.Kind switch
    {
        Kind.Set => ((TextCharData.Of(c) & step.Flags) != 0) || step.Chars.Contains(c),
        Kind.Space => (TextCharData.Of(c) & CharFlags.PySpace) != 0,
        _ => throw new InvalidOperationException("a rule starts with a class that is not a character set"),
    };

    private static bool MatchesFrom(string text, int start, Step[] steps)
    {
        int p = start;
        for (int k = 1; k < steps.Length; k++)
        {
            if (p >= text.Length) return false;
            ref readonly var step = ref steps[k];
            int cp = TextCharData.CodePointAt(text, p, out int width);
            bool ok = step.Kind switch
            {
                Kind.Set => cp < 0x10000 && (((TextCharData.Of(cp) & step.Flags) != 0) || step.Chars.Contains((char)cp)),
                Kind.Space => (TextCharData.Of(cp) & CharFlags.PySpace) != 0,
                Kind.Word => (TextCharData.Of(cp) & CharFlags.PyWord) != 0,
                Kind.AnyButNewline => cp != '\n',
                Kind.NotAsciiLetter => !(cp < 0x80 && char.IsAsciiLetter((char)cp)),
                _ => false,
            };
            if (!ok) return false;
            p += width;
        }
        return true;
    }

    /// <summary>
    /// ftfy's UTF-8 detector at <paramref name="start"/>: not after a strict continuation character, one or more
    /// (lead character, continuation characters) groups of 2, 3 or 4. Returns the end of the run, or -1.
    /// </summary>
    internal static int MatchUtf8Run(string text, int start)
    {
        if (start > 0 && (TextCharData.Of(text[start - 1]) & CharFlags.ContinuationStrict) != 0) return -1;
        int p = start;
        while (p < text.Length)
        {
            var lead = TextCharData.Of(text[p]);
            if ((lead & CharFlags.First2) != 0 && Continued(text, p, 1)) p += 2;
            else if ((lead & CharFlags.First3) != 0 && Continued(text, p, 2)) p += 3;
            else if ((lead & CharFlags.First4) != 0 && Continued(text, p, 3)) p += 4;
            else break;
        }
        return p > start ? p : -1;
    }

    private static bool Continued(string text, int lead, int count)
    {
        if (lead + count >= text.Length) return false;
        for (int k = 1; k <= count; k++)
            if ((TextCharData.Of(text[lead + k]) & CharFlags.Continuation) == 0) return false;
        return true;
    }

    /// <summary>Whether the UTF-8 detector matches anywhere in the text.</summary>
    internal static bool HasUtf8Clue(string text)
    {
        for (int i = 0; i < text.Length; i++)
            if (MatchUtf8Run(text, i) > i) return true;
        return false;
    }
}

/// <summary>ftfy's byte-level repairs before re-decoding as UTF-8 (<c>restore_byte_a0</c>, <c>replace_lossy_sequences</c>).</summary>
internal static class ByteRepairs
{
    // A set of bytes as a 256-bit mask.
    private readonly struct ByteSet
    {
        private readonly ulong _a, _b, _c, _d;

        private ByteSet(ulong a, ulong b, ulong c, ulong d) { _a = a; _b = b; _c = c; _d = d; }

        public static ByteSet Of(params (int Low, int High)[] ranges)
        {
            Span<ulong> w = stackalloc ulong[4];
            foreach (var (low, high) in ranges)
                for (int v = low; v <= high; v++) w[v >> 6] |= 1UL << (v & 63);
            return new ByteSet(w[0], w[1], w[2], w[3]);
        }

        public static ByteSet One(int value) => Of((value, value));

        public bool Contains(byte b) => ((b >> 6) switch { 0 => _a, 1 => _b, 2 => _c, _ => _d } & (1UL << (b & 63))) != 0;
    }

    private static readonly ByteSet Space = ByteSet.One(0x20);
    private static readonly ByteSet Cont = ByteSet.Of((0x80, 0xBF));
    private static readonly ByteSet ContNotA0 = ByteSet.Of((0x80, 0x84), (0x86, 0x9F), (0xA1, 0xBF));
    private static readonly ByteSet F0 = ByteSet.One(0xF0);

    // UTF-8 sequences that would be valid if a space were byte A0 again (tried in this order).
    private static readonly ByteSet[][] AlteredUtf8 =
    [
        [ByteSet.Of((0xC2, 0xC3), (0xC5, 0xC5), (0xCE, 0xCE), (0xD0, 0xD0), (0xD9, 0xD9)), Space],
        [ByteSet.Of((0xE2, 0xE3)), Space, ContNotA0],
        [ByteSet.Of((0xE0, 0xE3)), ContNotA0, Space],
        [F0, Space, Cont, Cont],
        [F0, Cont, Space, Cont],
        [F0, Cont, Cont, Space],
    ];

    private static readonly ByteSet Sub = ByteSet.One(0x1A);
    private static readonly ByteSet SubOrQ = ByteSet.Of((0x1A, 0x1A), (0x3F, 0x3F));
    private static readonly ByteSet SubOrCont = ByteSet.Of((0x1A, 0x1A), (0x80, 0xBF));
    private static readonly ByteSet SubQOrCont = ByteSet.Of((0x1A, 0x1A), (0x3F, 0x3F), (0x80, 0xBF));
    private static readonly ByteSet Ed = ByteSet.One(0xED);
    private static readonly ByteSet Lead3 = ByteSet.Of((0xE0, 0xEF));
    private static readonly ByteSet Lead4 = ByteSet.Of((0xF0, 0xF4));

    // UTF-8 (and CESU-8) sequences where a continuation byte was lost: byte 1A stands for a character the
    // sloppy code pages could not encode (U+FFFD), '?' for one lost on the way (tried in this order).
    private static readonly ByteSet[][] LossyUtf8 =
    [
        [ByteSet.Of((0xC2, 0xDF)), Sub],
        [ByteSet.Of((0xC2, 0xC3)), ByteSet.One('?')],
        [Ed, ByteSet.Of((0xA0, 0xAF)), SubOrQ, Ed, ByteSet.Of((0xB0, 0xBF)), SubQOrCont],
        [Ed, ByteSet.Of((0xA0, 0xAF)), SubQOrCont, Ed, ByteSet.Of((0xB0, 0xBF)), SubOrQ],
        [Lead3, SubOrQ, SubOrCont],
        [Lead3, SubOrCont, SubOrQ],
        [Lead4, SubOrQ, SubOrCont, SubOrCont],
        [Lead4, SubOrCont, SubOrQ, SubOrCont],
        [Lead4, SubOrCont, SubOrCont, SubOrQ],
        [Sub],
    ];

    private static readonly byte[] Replacement = [0xEF, 0xBF, 0xBD];

    private static int MatchAt(byte[] bytes, int start, ByteSet[][] patterns)
    {
        foreach (var pattern in patterns)
        {
            if (start + pattern.Length > bytes.Length) continue;
            int k = 0;
            while (k < pattern.Length && pattern[k].Contains(bytes[start + k])) k++;
            if (k == pattern.Length) return k;
        }
        return 0;
    }

    /// <summary>Whether some UTF-8 sequence here has a space where byte A0 belongs.</summary>
    internal static bool HasAlteredUtf8(byte[] bytes)
    {
        for (int i = 0; i < bytes.Length; i++)
            if (MatchAt(bytes, i, AlteredUtf8) > 0) return true;
        return false;
    }

    /// <summary>ftfy's <c>restore_byte_a0</c>.</summary>
    internal static byte[] RestoreByteA0(byte[] bytes)
    {
        // "Ã " that is not followed by a space, "quele", "quela", "quilo" or "s " was "à ".
        var withGrave = new List<byte>(bytes.Length + 8);
        for (int i = 0; i < bytes.Length; i++)
        {
            if (bytes[i] == 0xC3 && i + 1 < bytes.Length && bytes[i + 1] == 0x20 && !FollowedByWordAfterAGrave(bytes, i + 2))
            {
                withGrave.Add(0xC3);
                withGrave.Add(0xA0);
                withGrave.Add(0x20);
                i++;
                continue;
            }
            withGrave.Add(bytes[i]);
        }
        var source = withGrave.ToArray();
        var result = new byte[source.Length];
        for (int i = 0; i < source.Length;)
        {
            int length = MatchAt(source, i, AlteredUtf8);
            if (length == 0) { result[i] = source[i]; i++; continue; }
            for (int k = 0; k < length; k++) result[i + k] = source[i + k] == 0x20 ? (byte)0xA0 : source[i + k];
            i += length;
        }
        return result;
    }

    private static bool FollowedByWordAfterAGrave(byte[] bytes, int at)
    {
        static bool Has(byte[] b, int at, string s)
        {
            if (at + s.Length > b.Length) return false;
            for (int k = 0; k < s.Length; k++) if (b[at + k] != s[k]) return false;
            return true;
        }
        return Has(bytes, at, " ") || Has(bytes, at, "quele") || Has(bytes, at, "quela") || Has(bytes, at, "quilo") || Has(bytes, at, "s ");
    }

    /// <summary>ftfy's <c>replace_lossy_sequences</c>: damaged UTF-8 sequences become the UTF-8 of U+FFFD.</summary>
    internal static byte[] ReplaceLossySequences(byte[] bytes)
    {
        if (Array.IndexOf(bytes, (byte)0x1A) < 0 && Array.IndexOf(bytes, (byte)'?') < 0) return bytes;
        var result = new List<byte>(bytes.Length);
        for (int i = 0; i < bytes.Length;)
        {
            int length = MatchAt(bytes, i, LossyUtf8);
            if (length == 0) { result.Add(bytes[i]); i++; continue; }
            result.AddRange(Replacement);
            i += length;
        }
        return result.ToArray();
    }
}

/// <summary>
/// ftfy's "utf-8-variants" decoder, strict: standard UTF-8, plus CESU-8 surrogate pairs (six bytes) and Java's
/// two-byte NUL (C0 80). Anything else invalid fails.
/// </summary>
internal static class Utf8Variants
{
    internal static bool TryDecode(byte[] bytes, out string text)
    {
        var sb = new StringBuilder(bytes.Length);
        int n = bytes.Length;
        text = "";
        for (int i = 0; i < n;)
        {
            byte b = bytes[i];
            if (b < 0x80) { sb.Append((char)b); i++; continue; }
            if (b == 0xC0)
            {
                // ftfy's pattern is C0 followed by 80 or the end ('$' also matches before a final newline,
                // which the two-byte step then swallows).
                if (i + 1 < n && (bytes[i + 1] == 0x80 || (i + 1 == n - 1 && bytes[i + 1] == 0x0A))) { sb.Append('\0'); i += 2; continue; }
                return false;
            }
            if (b == 0xED && IsCesu8Pair(bytes, i))
            {
                int cp = ((bytes[i + 1] & 0x0F) << 16) + ((bytes[i + 2] & 0x3F) << 10) + ((bytes[i + 4] & 0x0F) << 6)
                    + (bytes[i + 5] & 0x3F) + 0x10000;
                sb.Append(char.ConvertFromUtf32(cp));
                i += 6;
                continue;
            }
            int length, cpMin;
            int value;
            if (b is >= 0xC2 and <= 0xDF) { length = 2; value = b & 0x1F; cpMin = 0x80; }
            else if (b is >= 0xE0 and <= 0xEF) { length = 3; value = b & 0x0F; cpMin = 0x800; }
            else if (b is >= 0xF0 and <= 0xF4) { length = 4; value = b & 0x07; cpMin = 0x10000; }
            else return false;
            if (i + length > n) return false;
            for (int k = 1; k < length; k++)
            {
                byte c = bytes[i + k];
                if ((c & 0xC0) != 0x80) return false;
                value = (value << 6) | (c & 0x3F);
            }
            if (value < cpMin || value > 0x10FFFF || value is >= 0xD800 and <= 0xDFFF) return false;
            if (value < 0x10000) sb.Append((char)value);
            else sb.Append(char.ConvertFromUtf32(value));
            i += length;
        }
        text = sb.ToString();
        return true;
    }

    // ED [A0-AF] [80-BF] ED [B0-BF] [80-BF]; the last byte may also be a final newline, which ftfy's '$' accepts.
    private static bool IsCesu8Pair(byte[] bytes, int i)
    {
        int n = bytes.Length;
        if (n - i < 6) return false;
        return bytes[i + 1] is >= 0xA0 and <= 0xAF && bytes[i + 2] is >= 0x80 and <= 0xBF && bytes[i + 3] == 0xED
            && bytes[i + 4] is >= 0xB0 and <= 0xBF
            && (bytes[i + 5] is >= 0x80 and <= 0xBF || (n - i == 6 && bytes[i + 5] == 0x0A));
    }
}
