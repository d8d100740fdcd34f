using System.Globalization;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;

namespace Defeat.Clip.Tokenization;

/// <summary>
/// The text clean-up CLIP's tokenizer applies before byte-pair encoding: the subset of ftfy's <c>fix_text</c>
/// that changes ordinary text, HTML unescaping (twice, as the reference does), whitespace collapsing and
/// lower-casing.
/// </summary>
/// <remarks>
/// Implemented from ftfy's defaults: ANSI terminal escapes removed, Latin ligatures split, fullwidth and
/// halfwidth forms mapped to their usual width (and the ideographic space to a space), curly quotes
/// straightened, line breaks unified, stray control characters removed, NFC normalisation. Not implemented:
/// ftfy's mojibake repair (<c>fix_encoding</c>: text that was decoded with the wrong code page, such as
/// "cafÃ©"), its upper-case HTML entities (<c>&amp;EACUTE;</c>), and Python's HTML5-only named entities or
/// entities written without a semicolon; docs/clip.md lists these.
/// </remarks>
public static partial class ClipTextCleaner
{
    private static readonly Dictionary<char, string> Ligatures = new()
    {
        ['\u0132'] = "IJ", ['\u0133'] = "ij", ['\u0149'] = "\u02BCn", ['\u01F1'] = "DZ", ['\u01F2'] = "Dz", ['\u01F3'] = "dz",
        ['\u01C4'] = "D\u017D", ['\u01C5'] = "D\u017E", ['\u01C6'] = "d\u017E", ['\u01C7'] = "LJ", ['\u01C8'] = "Lj", ['\u01C9'] = "lj",
        ['\u01CA'] = "NJ", ['\u01CB'] = "Nj", ['\u01CC'] = "nj", ['\uFB00'] = "ff", ['\uFB01'] = "fi", ['\uFB02'] = "fl",
        ['\uFB03'] = "ffi", ['\uFB04'] = "ffl", ['\uFB05'] = "\u017Ft", ['\uFB06'] = "st",
    };

    [GeneratedRegex("\u001b\\[(?:\\d|;)*[a-zA-Z]")]
    private static partial Regex AnsiEscape();

    /// <summary>Applies the whole clean-up: ftfy subset, HTML unescape twice, trim, whitespace collapse, lower case.</summary>
    /// <param name="text">Raw text.</param>
    public static string Clean(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var fixedText = FixText(text);
        fixedText = WebUtility.HtmlDecode(WebUtility.HtmlDecode(fixedText));
        return CollapseWhitespace(fixedText).ToLowerInvariant();
    }

    /// <summary>The implemented part of ftfy's <c>fix_text</c> with its default options.</summary>
    /// <param name="text">Raw text.</param>
    public static string FixText(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        // ftfy unescapes HTML only when the text holds no '<' (it might be real HTML otherwise).
        if (!text.Contains('<')) text = WebUtility.HtmlDecode(text);
        text = AnsiEscape().Replace(text, "");
        var sb = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (Ligatures.TryGetValue(c, out var lig)) { sb.Append(lig); continue; }
            if (c == '\u3000') { sb.Append(' '); continue; }
            if (c >= '\uFF01' && c < '\uFFF0')
            {
                sb.Append(c.ToString().Normalize(NormalizationForm.FormKC));
                continue;
            }
            sb.Append(c);
        }
        text = sb.ToString();
        sb.Clear();
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            // Curly quotes become straight ones.
            if (c == '\u02BC' || (c >= '\u2018' && c <= '\u201B')) { sb.Append('\''); continue; }
            if (c >= '\u201C' && c <= '\u201F') { sb.Append('"'); continue; }
            // Line breaks of every convention become '\n'.
            if (c == '\r') { sb.Append('\n'); if (i + 1 < text.Length && text[i + 1] == '\n') i++; continue; }
            if (c == '\u2028' || c == '\u2029' || c == '\u0085') { sb.Append('\n'); continue; }
            if (IsStrayControl(c)) continue;
            sb.Append(c);
        }
        return sb.ToString().Normalize(NormalizationForm.FormC);
    }

    /// <summary>Collapses every run of whitespace to one space and trims the ends (Python's <c>\s</c> and <c>strip</c>).</summary>
    /// <param name="text">Text.</param>
    public static string CollapseWhitespace(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var sb = new StringBuilder(text.Length);
        bool pendingSpace = false;
        foreach (char c in text)
        {
            if (IsPythonSpace(c)) { pendingSpace = sb.Length > 0; continue; }
            if (pendingSpace) { sb.Append(' '); pendingSpace = false; }
            sb.Append(c);
        }
        return sb.ToString();
    }

    /// <summary>Python's <c>str.isspace</c>: .NET's white space plus the information separators U+001C..U+001F.</summary>
    internal static bool IsPythonSpace(char c) => char.IsWhiteSpace(c) || (c >= '\u001C' && c <= '\u001F');

    // ftfy's remove_control_chars: C0 controls except tab/line feed/form feed/carriage return, DEL,
    // deprecated format characters, the byte-order mark and interlinear annotation characters.
    private static bool IsStrayControl(char c) =>
        c <= '\u0008' || c == '\u000B' || (c >= '\u000E' && c <= '\u001F') || c == '\u007F'
        || (c >= '\u206A' && c <= '\u206F') || c == '\uFEFF' || (c >= '\uFFF9' && c <= '\uFFFC');

    internal static UnicodeCategory Category(Rune r) => Rune.GetUnicodeCategory(r);
}
