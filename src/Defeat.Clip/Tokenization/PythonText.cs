using System.Text;

namespace Defeat.Clip.Tokenization;

/// <summary>
/// The Python string operations CLIP's tokenizer relies on, with Python's semantics: <c>str.lower()</c> (full case
/// mapping and the final-sigma rule), <c>str.strip()</c>, and <c>html.unescape</c> (HTML5 rules).
/// </summary>
internal static class PythonText
{
    private const int CapitalSigma = 0x3A3;

    private static readonly Dictionary<string, string> Html5 = BuildHtml5();
    private static readonly Dictionary<int, string> InvalidCharRefs =
        ClipTextTables.InvalidCharRefs.ToDictionary(p => p.Number, p => p.Value);

    private static Dictionary<string, string> BuildHtml5()
    {
        var names = ClipTextTables.Html5Entities;
        var map = new Dictionary<string, string>(names.Length / 2, StringComparer.Ordinal);
        for (int i = 0; i < names.Length; i += 2) map[names[i]] = names[i + 1];
        return map;
    }

    /// <summary>The HTML5 named references, by name (with or without the trailing ';', as listed).</summary>
    internal static IReadOnlyDictionary<string, string> Html5Entities => Html5;

    /// <summary>Python's <c>str.isspace()</c> of one code point.</summary>
    internal static bool IsSpace(int codePoint) => (TextCharData.Of(codePoint) & CharFlags.PySpace) != 0;

    /// <summary>Python's <c>str.strip()</c> without arguments.</summary>
    internal static string Strip(string text)
    {
        int start = 0, end = text.Length;
        // Every Python white-space character is in the BMP.
        while (start < end && (TextCharData.Of(text[start]) & CharFlags.PySpace) != 0) start++;
        while (end > start && (TextCharData.Of(text[end - 1]) & CharFlags.PySpace) != 0) end--;
        return start == 0 && end == text.Length ? text : text[start..end];
    }

    /// <summary>Python's <c>str.lower()</c>.</summary>
    internal static string Lower(string text)
    {
        int i = 0;
        // Fast path: nothing to change in a leading run of ASCII without capitals.
        while (i < text.Length && text[i] < 0x80 && text[i] is not (>= 'A' and <= 'Z')) i++;
        if (i == text.Length) return text;
        var sb = new StringBuilder(text.Length);
        sb.Append(text, 0, i);
        while (i < text.Length)
        {
            char c = text[i];
            if (c < 0x80)
            {
                sb.Append(c is >= 'A' and <= 'Z' ? (char)(c + 32) : c);
                i++;
                continue;
            }
            int cp = TextCharData.CodePointAt(text, i, out int width);
            if (cp == CapitalSigma) sb.Append(IsFinalSigma(text, i) ? '\u03C2' : '\u03C3');
            else
            {
                int lower = TextCharData.Lower(cp, out var multi);
                if (multi is not null) sb.Append(multi);
                else if (lower < 0x10000) sb.Append((char)lower);
                else sb.Append(char.ConvertFromUtf32(lower));
            }
            i += width;
        }
        return sb.ToString();
    }

    // Python's rule: a cased character before the sigma (case-ignorable ones skipped) and no cased character
    // after it (case-ignorable ones skipped).
    private static bool IsFinalSigma(string text, int index)
    {
        int j = index;
        int before = -1;
        while (j > 0)
        {
            int cp = TextCharData.CodePointBefore(text, j, out int width);
            j -= width;
            if ((TextCharData.Of(cp) & CharFlags.CaseIgnorable) == 0) { before = cp; break; }
        }
        if (before < 0 || (TextCharData.Of(before) & CharFlags.Cased) == 0) return false;
        j = index + 1;
        while (j < text.Length)
        {
            int cp = TextCharData.CodePointAt(text, j, out int width);
            var flags = TextCharData.Of(cp);
            if ((flags & CharFlags.CaseIgnorable) == 0) return (flags & CharFlags.Cased) == 0;
            j += width;
        }
        return true;
    }

    /// <summary>
    /// Python's <c>html.unescape</c>: numeric references (with or without ';', HTML5's replacements for invalid
    /// numbers), named references from the HTML5 table, including the longest-prefix rule for names without ';'.
    /// </summary>
    /// <remarks>Where Python raises (a decimal reference of more than 4,300 digits exceeds its integer-parsing
    /// limit), this returns U+FFFD as for any other number beyond U+10FFFF.</remarks>
    internal static string HtmlUnescape(string text)
    {
        int amp = text.IndexOf('&');
        if (amp < 0) return text;
        var sb = new StringBuilder(text.Length);
        sb.Append(text, 0, amp);
        int i = amp;
        while (i < text.Length)
        {
            if (text[i] != '&') { sb.Append(text[i]); i++; continue; }
            int end = MatchCharRef(text, i + 1, out var replacement);
            if (end < 0) { sb.Append('&'); i++; continue; }
            sb.Append(replacement);
            i = end;
        }
        return sb.ToString();
    }

    // Matches what follows '&' as Python's html module does; returns the end of the match or -1.
    private static int MatchCharRef(string text, int start, out string replacement)
    {
        replacement = "";
        if (start >= text.Length) return -1;
        if (text[start] == '#')
        {
            int p = start + 1;
            bool hex = false;
            if (p < text.Length && (text[p] is 'x' or 'X') && p + 1 < text.Length && char.IsAsciiHexDigit(text[p + 1]))
            {
                hex = true;
                p++;
            }
            else if (p >= text.Length || !char.IsAsciiDigit(text[p])) return -1;
            int digitsStart = p;
            while (p < text.Length && (hex ? char.IsAsciiHexDigit(text[p]) : char.IsAsciiDigit(text[p]))) p++;
            int number = ParseNumber(text.AsSpan(digitsStart, p - digitsStart), hex ? 16 : 10);
            if (p < text.Length && text[p] == ';') p++;
            replacement = NumericReference(number);
            return p;
        }

        // [^\t\n\f <&#;]{1,32};? counted in code points.
        int q = start, count = 0, firstNonAscii = -1;
        while (q < text.Length && count < 32)
        {
            char c = text[q];
            if (c is '\t' or '\n' or '\f' or ' ' or '<' or '&' or '#' or ';') break;
            if (c >= 0x80 && firstNonAscii < 0) firstNonAscii = q - start;
            q += char.IsHighSurrogate(c) && q + 1 < text.Length && char.IsLowSurrogate(text[q + 1]) ? 2 : 1;
            count++;
        }
        if (count == 0) return -1;
        if (q < text.Length && text[q] == ';') { q++; count++; }
        var name = text.Substring(start, q - start);
        if (Html5.TryGetValue(name, out var value)) { replacement = value; return q; }
        // The longest prefix that names an entity (2 code points at least, shorter than the whole). Names are
        // ASCII, so only prefixes before the first non-ASCII character can match, and there code points are chars.
        int longest = count - 1;
        if (firstNonAscii >= 0) longest = Math.Min(longest, firstNonAscii);
        for (int x = longest; x >= 2; x--)
        {
            if (Html5.TryGetValue(name[..x], out value))
            {
                replacement = value + name[x..];
                return q;
            }
        }
        replacement = "&" + name;
        return q;
    }

    // The value of a run of digits, or int.MaxValue for anything beyond U+10FFFF.
    private static int ParseNumber(ReadOnlySpan<char> digits, int radix)
    {
        long value = 0;
        foreach (char c in digits)
        {
            value = value * radix + (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
            if (value > 0x10FFFF) return int.MaxValue;
        }
        return (int)value;
    }

    private static string NumericReference(int number)
    {
        if (InvalidCharRefs.TryGetValue(number, out var fixedValue)) return fixedValue;
        if (number is >= 0xD800 and <= 0xDFFF || number > 0x10FFFF) return "\uFFFD";
        if (IsInvalidCodePoint(number)) return "";
        return char.ConvertFromUtf32(number);
    }

    private static bool IsInvalidCodePoint(int number)
    {
        var r = ClipTextTables.InvalidCodePoints;
        for (int i = 0; i < r.Length; i += 2)
            if (number >= r[i] && number <= r[i + 1]) return true;
        return false;
    }
}
