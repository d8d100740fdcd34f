namespace Defeat.Clip.Tokenization;

/// <summary>Properties of one character in the reference clean-up (Python, the regex module, ftfy).</summary>
[Flags]
internal enum CharFlags : uint
{
    None = 0,
    /// <summary>regex module: <c>[\p{L}]</c> under IGNORECASE.</summary>
    RxLetter = 1u << 0,
    /// <summary>regex module: <c>[\p{N}]</c> under IGNORECASE.</summary>
    RxNumber = 1u << 1,
    /// <summary>regex module: <c>\s</c>.</summary>
    RxSpace = 1u << 2,
    /// <summary>None of CLIP's pattern classes matches the character (it is skipped).</summary>
    RxNeither = 1u << 3,
    /// <summary>Python: <c>str.isspace()</c>, and <c>\s</c> of the re module.</summary>
    PySpace = 1u << 4,
    /// <summary>Python re: <c>\w</c>.</summary>
    PyWord = 1u << 5,
    /// <summary>Python re: <c>\d</c>.</summary>
    PyDigit = 1u << 6,
    /// <summary>Cased and not case-ignorable (Python's final-sigma rule).</summary>
    Cased = 1u << 7,
    /// <summary>Case-ignorable (Python's final-sigma rule).</summary>
    CaseIgnorable = 1u << 8,
    /// <summary>ftfy removes it (remove_control_chars).</summary>
    Control = 1u << 9,

    // ftfy's badness categories.
    Common = 1u << 10,
    C1 = 1u << 11,
    Bad = 1u << 12,
    Law = 1u << 13,
    Currency = 1u << 14,
    StartPunct = 1u << 15,
    EndPunct = 1u << 16,
    Numeric = 1u << 17,
    Kaomoji = 1u << 18,
    UpperAccented = 1u << 19,
    LowerAccented = 1u << 20,
    UpperCommon = 1u << 21,
    LowerCommon = 1u << 22,
    Box = 1u << 23,

    // ftfy's UTF-8 clues.
    First2 = 1u << 24,
    First3 = 1u << 25,
    First4 = 1u << 26,
    Continuation = 1u << 27,
    ContinuationStrict = 1u << 28,
}

/// <summary>
/// Fast look-ups over <see cref="ClipTextTables"/>: a flag word per BMP character (built once), range searches
/// for the other planes, and Python's lower-case mapping.
/// </summary>
internal static class TextCharData
{
    // The properties that can have members outside the BMP; ftfy's classes are all in the BMP (the generator checks).
    private static readonly (int[] Ranges, CharFlags Flag)[] Astral =
    [
        (ClipTextTables.RxLetter, CharFlags.RxLetter),
        (ClipTextTables.RxNumber, CharFlags.RxNumber),
        (ClipTextTables.RxSpace, CharFlags.RxSpace),
        (ClipTextTables.RxNeither, CharFlags.RxNeither),
        (ClipTextTables.PySpace, CharFlags.PySpace),
        (ClipTextTables.PyWord, CharFlags.PyWord),
        (ClipTextTables.PyDigit, CharFlags.PyDigit),
        (ClipTextTables.Cased, CharFlags.Cased),
        (ClipTextTables.CaseIgnorable, CharFlags.CaseIgnorable),
        (ClipTextTables.ControlChars, CharFlags.Control),
    ];

    // Initialised after Astral (static fields initialise in textual order).
    private static readonly uint[] Bmp = BuildBmp();
    private static readonly Dictionary<int, int> LowerSingle = BuildLower();
    private static readonly Dictionary<int, string> LowerMultiMap = ClipTextTables.LowerMulti.ToDictionary(p => p.CodePoint, p => p.Lower);

    private static (int[] Ranges, CharFlags Flag)[] BmpOnly() =>
    [
        (ClipTextTables.Mojibake_common, CharFlags.Common),
        (ClipTextTables.Mojibake_c1, CharFlags.C1),
        (ClipTextTables.Mojibake_bad, CharFlags.Bad),
        (ClipTextTables.Mojibake_law, CharFlags.Law),
        (ClipTextTables.Mojibake_currency, CharFlags.Currency),
        (ClipTextTables.Mojibake_start_punctuation, CharFlags.StartPunct),
        (ClipTextTables.Mojibake_end_punctuation, CharFlags.EndPunct),
        (ClipTextTables.Mojibake_numeric, CharFlags.Numeric),
        (ClipTextTables.Mojibake_kaomoji, CharFlags.Kaomoji),
        (ClipTextTables.Mojibake_upper_accented, CharFlags.UpperAccented),
        (ClipTextTables.Mojibake_lower_accented, CharFlags.LowerAccented),
        (ClipTextTables.Mojibake_upper_common, CharFlags.UpperCommon),
        (ClipTextTables.Mojibake_lower_common, CharFlags.LowerCommon),
        (ClipTextTables.Mojibake_box, CharFlags.Box),
        (ClipTextTables.Clue_utf8_first_of_2, CharFlags.First2),
        (ClipTextTables.Clue_utf8_first_of_3, CharFlags.First3),
        (ClipTextTables.Clue_utf8_first_of_4, CharFlags.First4),
        (ClipTextTables.Clue_utf8_continuation, CharFlags.Continuation),
        (ClipTextTables.Clue_utf8_continuation_strict, CharFlags.ContinuationStrict),
    ];

    private static uint[] BuildBmp()
    {
        var table = new uint[0x10000];
        foreach (var (ranges, flag) in Astral.Concat(BmpOnly()))
        {
            for (int i = 0; i < ranges.Length; i += 2)
            {
                if (ranges[i] > 0xFFFF) break;
                int end = Math.Min(ranges[i + 1], 0xFFFF);
                for (int cp = ranges[i]; cp <= end; cp++) table[cp] |= (uint)flag;
            }
        }
        return table;
    }

    private static Dictionary<int, int> BuildLower()
    {
        var map = new Dictionary<int, int>(1500);
        var runs = ClipTextTables.LowerRuns;
        for (int i = 0; i < runs.Length; i += 4)
            for (int k = 0; k < runs[i + 1]; k++)
            {
                int cp = runs[i] + k * runs[i + 2];
                map[cp] = cp + runs[i + 3];
            }
        return map;
    }

    /// <summary>The flags of a BMP character (a lone surrogate has none).</summary>
    internal static CharFlags Of(char c) => (CharFlags)Bmp[c];

    /// <summary>The flags of any code point.</summary>
    internal static CharFlags Of(int codePoint)
    {
        if (codePoint < 0x10000) return (CharFlags)Bmp[codePoint];
        var flags = CharFlags.None;
        foreach (var (ranges, flag) in Astral)
            if (InRanges(ranges, codePoint)) flags |= flag;
        return flags;
    }

    /// <summary>The code point at <paramref name="index"/> (a lone surrogate stands for itself) and its UTF-16 length.</summary>
    internal static int CodePointAt(string text, int index, out int width)
    {
        char c = text[index];
        if (char.IsHighSurrogate(c) && index + 1 < text.Length && char.IsLowSurrogate(text[index + 1]))
        {
            width = 2;
            return char.ConvertToUtf32(c, text[index + 1]);
        }
        width = 1;
        return c;
    }

    /// <summary>The code point that ends just before <paramref name="end"/> and its UTF-16 length.</summary>
    internal static int CodePointBefore(string text, int end, out int width)
    {
        char c = text[end - 1];
        if (char.IsLowSurrogate(c) && end >= 2 && char.IsHighSurrogate(text[end - 2]))
        {
            width = 2;
            return char.ConvertToUtf32(text[end - 2], c);
        }
        width = 1;
        return c;
    }

    /// <summary>Python's lower case of one code point other than U+03A3: one code point, or a string in <paramref name="multi"/>.</summary>
    internal static int Lower(int codePoint, out string? multi)
    {
        multi = null;
        if (codePoint < 0x80) return codePoint is >= 'A' and <= 'Z' ? codePoint + 32 : codePoint;
        if (LowerSingle.TryGetValue(codePoint, out int lower)) return lower;
        if (LowerMultiMap.TryGetValue(codePoint, out multi)) return -1;
        return codePoint;
    }

    private static bool InRanges(int[] ranges, int cp)
    {
        int lo = 0, hi = ranges.Length / 2 - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1;
            if (cp < ranges[2 * mid]) hi = mid - 1;
            else if (cp > ranges[2 * mid + 1]) lo = mid + 1;
            else return true;
        }
        return false;
    }
}
