using System.Buffers;
using System.Text;

namespace Defeat.Clip.Tokenization;

/// <summary>
/// ftfy's <c>fix_text</c> with its default configuration, as CLIP's tokenizer calls it: HTML entities, mojibake
/// repair (<c>fix_encoding</c>), C1 controls, Latin ligatures, character width, curly quotes, line breaks,
/// surrogates, terminal escapes, control characters and NFC, applied line by line until nothing changes.
/// </summary>
/// <remarks>Written from ftfy 6.3's documented behaviour; its character data is in <see cref="ClipTextTables"/>.</remarks>
internal static class Ftfy
{
    private const int MaxDecodeLength = 1_000_000;

    private static readonly Dictionary<string, string> Entities = BuildEntities();
    private static readonly Dictionary<int, string> Ligatures = ClipTextTables.Ligatures.ToDictionary(p => p.CodePoint, p => p.Replacement);
    private static readonly Dictionary<int, string> Widths = ClipTextTables.WidthMap.ToDictionary(p => p.CodePoint, p => p.Replacement);
    private static readonly SearchValues<char> LigatureChars = SearchValues.Create(string.Concat(Ligatures.Keys.Select(k => (char)k)));
    private static readonly SearchValues<char> WidthChars = SearchValues.Create(string.Concat(Widths.Keys.Select(k => (char)k)));
    private static readonly SearchValues<char> ControlChars = BuildControlChars();
    private static readonly SingleByteCodec[] Codecs = ClipTextTables.Charmaps.Select(c => new SingleByteCodec(c.Name, c.Decoded)).ToArray();
    private static readonly SingleByteCodec Latin1 = Codecs.Single(c => c.Name == "latin-1");
    private static readonly string Sloppy1252 = Codecs.Single(c => c.Name == "sloppy-windows-1252").Decoded;

    private static SearchValues<char> BuildControlChars()
    {
        var chars = new List<char>();
        var r = ClipTextTables.ControlChars;
        for (int i = 0; i < r.Length; i += 2)
            for (int c = r[i]; c <= r[i + 1]; c++) chars.Add((char)c);
        return SearchValues.Create(chars.ToArray());
    }

    private static Dictionary<string, string> BuildEntities()
    {
        // ftfy decodes the HTML5 names that end in ';', plus upper-case spellings of the all-lower-case ones
        // that Python's html.unescape would leave alone, with the value upper-cased.
        var upper = new Dictionary<string, string>(StringComparer.Ordinal);
        var pairs = ClipTextTables.EntityValueUpper;
        for (int i = 0; i < pairs.Length; i += 2) upper[pairs[i]] = pairs[i + 1];
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, value) in PythonText.Html5Entities)
        {
            if (!name.EndsWith(';')) continue;
            map["&" + name] = value;
            if (name.Any(char.IsAsciiLetterUpper)) continue;
            var upperName = "&" + name.ToUpperInvariant();
            if (PythonText.HtmlUnescape(upperName) == upperName)
                map[upperName] = upper.TryGetValue(value, out var u) ? u : value;
        }
        return map;
    }

    /// <summary><c>ftfy.fix_text(text)</c> with the default configuration.</summary>
    internal static string FixText(string text)
    {
        if (text.Length == 0) return text;
        bool unescape = true;
        int pos = 0;
        StringBuilder? sb = null;
        while (pos < text.Length)
        {
            int newline = text.IndexOf('\n', pos);
            int end = newline < 0 ? text.Length : newline + 1;
            end = CapCodePoints(text, pos, end, MaxDecodeLength);
            var segment = pos == 0 && end == text.Length ? text : text[pos..end];
            // "auto": once a segment holds '<' (it may be real HTML), entities are left alone from there on.
            if (unescape && segment.Contains('<')) unescape = false;
            var fixedSegment = FixSegment(segment, unescape);
            if (pos == 0 && end == text.Length) return fixedSegment;
            (sb ??= new StringBuilder(text.Length)).Append(fixedSegment);
            pos = end;
        }
        return sb!.ToString();
    }

    private static int CapCodePoints(string text, int start, int end, int max)
    {
        if (end - start <= max) return end;
        int count = 0, i = start;
        while (i < end && count < max)
        {
            i += char.IsHighSurrogate(text[i]) && i + 1 < end && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
            count++;
        }
        return i;
    }

    /// <summary>ftfy's <c>fix_and_explain</c> on one segment: every fixer in order, repeated until the text is stable.</summary>
    internal static string FixSegment(string text, bool unescapeHtml)
    {
        while (true)
        {
            var original = text;
            if (unescapeHtml) text = UnescapeHtml(text);
            text = FixEncoding(text);
            text = FixC1Controls(text);
            text = Translate(text, Ligatures, LigatureChars);
            text = Translate(text, Widths, WidthChars);
            text = UncurlQuotes(text);
            text = FixLineBreaks(text);
            text = FixSurrogates(text);
            text = RemoveTerminalEscapes(text);
            text = RemoveControlChars(text);
            text = Nfc(text);
            if (string.Equals(text, original, StringComparison.Ordinal)) return text;
        }
    }

    // ------------------------------------------------------------------ the simple fixers

    /// <summary>ftfy's <c>unescape_html</c>: <c>&amp;#?[0-9A-Za-z]{1,24};</c> decoded when it is a known entity.</summary>
    internal static string UnescapeHtml(string text)
    {
        int amp = text.IndexOf('&');
        if (amp < 0) return text;
        var sb = new StringBuilder(text.Length);
        sb.Append(text, 0, amp);
        int i = amp;
        while (i < text.Length)
        {
            if (text[i] != '&') { sb.Append(text[i++]); continue; }
            int p = i + 1;
            if (p < text.Length && text[p] == '#') p++;
            int runStart = p;
            while (p < text.Length && p - runStart <= 24 && char.IsAsciiLetterOrDigit(text[p])) p++;
            int run = p - runStart;
            if (run is < 1 or > 24 || p >= text.Length || text[p] != ';') { sb.Append('&'); i++; continue; }
            var entity = text.Substring(i, p + 1 - i);
            if (Entities.TryGetValue(entity, out var value)) sb.Append(value);
            else if (entity.StartsWith("&#", StringComparison.Ordinal))
            {
                var unescaped = PythonText.HtmlUnescape(entity);
                sb.Append(unescaped.Contains(';') ? entity : unescaped);
            }
            else sb.Append(entity);
            i = p + 1;
        }
        return sb.ToString();
    }

    /// <summary>ftfy's <c>fix_c1_controls</c>: U+0080..U+009F read as their windows-1252 characters.</summary>
    internal static string FixC1Controls(string text)
    {
        int first = IndexOfC1(text);
        if (first < 0) return text;
        var chars = text.ToCharArray();
        for (int i = first; i < chars.Length; i++)
            if (chars[i] is >= '\u0080' and <= '\u009F') chars[i] = Sloppy1252[chars[i]];
        return new string(chars);
    }

    private static int IndexOfC1(string text) => text.AsSpan().IndexOfAnyInRange('\u0080', '\u009F');

    private static string Translate(string text, Dictionary<int, string> map, SearchValues<char> keys)
    {
        int first = text.AsSpan().IndexOfAny(keys);
        if (first < 0) return text;
        StringBuilder? sb = null;
        for (int i = first; i < text.Length; i++)
        {
            if (map.TryGetValue(text[i], out var replacement))
            {
                if (sb is null) { sb = new StringBuilder(text.Length + 8); sb.Append(text, 0, i); }
                sb.Append(replacement);
            }
            else sb?.Append(text[i]);
        }
        return sb?.ToString() ?? text;
    }

    private static string UncurlQuotes(string text)
    {
        if (text.AsSpan().IndexOfAnyInRange('\u2018', '\u201F') < 0 && !text.Contains('\u02BC')) return text;
        var chars = text.ToCharArray();
        for (int i = 0; i < chars.Length; i++)
        {
            char c = chars[i];
            if (c == '\u02BC' || c is >= '\u2018' and <= '\u201B') chars[i] = '\'';
            else if (c is >= '\u201C' and <= '\u201F') chars[i] = '"';
        }
        return new string(chars);
    }

    private static string FixLineBreaks(string text)
    {
        if (text.AsSpan().IndexOfAny('\r', '\u2028', '\u2029') < 0 && !text.Contains('\u0085')) return text;
        var sb = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (c == '\r')
            {
                sb.Append('\n');
                if (i + 1 < text.Length && text[i + 1] == '\n') i++;
            }
            else sb.Append(c is '\u2028' or '\u2029' or '\u0085' ? '\n' : c);
        }
        return sb.ToString();
    }

    // A .NET string holds valid surrogate pairs as the characters they encode (what ftfy's pairing produces);
    // lone surrogates become U+FFFD.
    private static string FixSurrogates(string text)
    {
        int first = text.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF');
        if (first < 0) return text;
        char[]? chars = null;
        for (int i = first; i < text.Length; i++)
        {
            char c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) { i++; continue; }
            if (char.IsSurrogate(c)) (chars ??= text.ToCharArray())[i] = '\uFFFD';
        }
        return chars is null ? text : new string(chars);
    }

    /// <summary>ftfy's <c>remove_terminal_escapes</c>: ESC '[' then digits (any Unicode decimal digit) or ';', then an ASCII letter.</summary>
    private static string RemoveTerminalEscapes(string text)
    {
        int esc = text.IndexOf('\u001B');
        if (esc < 0) return text;
        var sb = new StringBuilder(text.Length);
        sb.Append(text, 0, esc);
        int i = esc;
        while (i < text.Length)
        {
            if (text[i] == '\u001B' && i + 1 < text.Length && text[i + 1] == '[')
            {
                int p = i + 2;
                while (p < text.Length)
                {
                    if (text[p] == ';') { p++; continue; }
                    int cp = TextCharData.CodePointAt(text, p, out int width);
                    if ((TextCharData.Of(cp) & CharFlags.PyDigit) == 0) break;
                    p += width;
                }
                if (p < text.Length && char.IsAsciiLetter(text[p])) { i = p + 1; continue; }
            }
            sb.Append(text[i++]);
        }
        return sb.ToString();
    }

    private static string RemoveControlChars(string text)
    {
        int i = text.AsSpan().IndexOfAny(ControlChars);
        if (i < 0) return text;
        var sb = new StringBuilder(text.Length);
        sb.Append(text, 0, i);
        for (; i < text.Length; i++)
            if (!ControlChars.Contains(text[i])) sb.Append(text[i]);
        return sb.ToString();
    }

    private static string Nfc(string text)
    {
        // Nothing below U+0300 composes or reorders unless a mark at U+0300 or above follows.
        if (text.AsSpan().IndexOfAnyInRange('\u0300', '\uFFFF') < 0) return text;
        return text.IsNormalized(NormalizationForm.FormC) ? text : text.Normalize(NormalizationForm.FormC);
    }

    // ------------------------------------------------------------------ mojibake

    /// <summary>ftfy's <c>fix_encoding</c>: one re-decoding step after another until the text stops changing.</summary>
    internal static string FixEncoding(string text)
    {
        while (true)
        {
            var next = FixEncodingStep(text);
            if (string.Equals(next, text, StringComparison.Ordinal)) return next;
            text = next;
        }
    }

    private static string FixEncodingStep(string text)
    {
        if (text.Length == 0 || Ascii.IsValid(text) || !Badness.IsBad(text)) return text;
        bool latin1Possible = false;
        // Text that was UTF-8, decoded with a single-byte code page: encode it back and decode it as UTF-8.
        foreach (var codec in Codecs)
        {
            if (!codec.TryEncode(text, out var bytes)) continue;
            if (ReferenceEquals(codec, Latin1)) latin1Possible = true;
            if (codec.Name != "macroman" && ByteRepairs.HasAlteredUtf8(bytes)) bytes = ByteRepairs.RestoreByteA0(bytes);
            if (codec.IsSloppy) bytes = ByteRepairs.ReplaceLossySequences(bytes);
            if (Utf8Variants.TryDecode(bytes, out var decoded)) return decoded;
        }
        // Mojibake embedded in otherwise good text: fix those stretches alone.
        if (Badness.HasUtf8Clue(text))
        {
            var repaired = DecodeInconsistentUtf8(text);
            if (!string.Equals(repaired, text, StringComparison.Ordinal)) return repaired;
        }
        // Latin-1 with C1 controls that windows-1252 would have printed (strict windows-1252: holes fail).
        if (latin1Possible && Latin1.TryEncode(text, out var latin1) && TryDecodeStrictWindows1252(latin1, out var w1252)
            && !string.Equals(w1252, text, StringComparison.Ordinal))
            return w1252;
        if (IndexOfC1(text) >= 0) return FixC1Controls(text);
        return text;
    }

    private static bool TryDecodeStrictWindows1252(byte[] bytes, out string text)
    {
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++)
        {
            char c = ClipTextTables.StrictWindows1252[bytes[i]];
            if (c == '\uFFFF') { text = ""; return false; }
            chars[i] = c;
        }
        text = new string(chars);
        return true;
    }

    /// <summary>ftfy's <c>decode_inconsistent_utf8</c>: each run that looks like UTF-8 mojibake is fixed on its own.</summary>
    private static string DecodeInconsistentUtf8(string text)
    {
        var sb = new StringBuilder(text.Length);
        int i = 0;
        while (i < text.Length)
        {
            int end = Badness.MatchUtf8Run(text, i);
            if (end <= i) { sb.Append(text[i++]); continue; }
            var run = text[i..end];
            sb.Append(run.Length < text.Length && Badness.IsBad(run) ? FixEncoding(run) : run);
            i = end;
        }
        return sb.ToString();
    }

    /// <summary>One of ftfy's single-byte encodings (latin-1, its sloppy windows code pages, iso-8859-2, macroman, cp437).</summary>
    private sealed class SingleByteCodec
    {
        // Characters below U+0100 by table, the others by dictionary; -1 where the code page has no byte.
        private readonly short[] _low = new short[256];
        private readonly Dictionary<char, byte> _high = new();

        public SingleByteCodec(string name, string decoded)
        {
            Name = name;
            Decoded = decoded;
            Array.Fill(_low, (short)-1);
            for (int b = 0; b < 256; b++)
            {
                if (decoded[b] < 0x100) _low[decoded[b]] = (short)b;
                else _high[decoded[b]] = (byte)b;
            }
            IsSloppy = name.StartsWith("sloppy", StringComparison.Ordinal);
        }

        public string Name { get; }
        public string Decoded { get; }
        public bool IsSloppy { get; }

        public bool TryEncode(string text, out byte[] bytes)
        {
            bytes = new byte[text.Length];
            for (int i = 0; i < text.Length; i++)
            {
                char c = text[i];
                if (c < 0x100)
                {
                    short b = _low[c];
                    if (b < 0) { bytes = []; return false; }
                    bytes[i] = (byte)b;
                }
                else if (_high.TryGetValue(c, out var b)) bytes[i] = b;
                else { bytes = []; return false; }
            }
            return true;
        }
    }
}
