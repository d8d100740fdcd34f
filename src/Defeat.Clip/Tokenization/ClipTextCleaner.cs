using System.Text;

namespace Defeat.Clip.Tokenization;

/// <summary>
/// The text clean-up CLIP's reference tokenizer applies before byte-pair encoding, reproduced exactly:
/// ftfy's <c>fix_text</c> (default configuration), Python's <c>html.unescape</c> twice, <c>strip</c>, every run of
/// white space to one space, Python's <c>str.lower()</c>.
/// </summary>
/// <remarks>
/// <para>ftfy's <c>fix_text</c> is implemented in full for its defaults: HTML entities (only while no '&lt;' has
/// been seen, line by line; upper-case entities such as <c>&amp;EACUTE;</c> included), mojibake repair (text
/// that was UTF-8 but was decoded as latin-1, windows-1250/1251/1252/1253/1254/1257, iso-8859-2, MacRoman or
/// cp437, including the "badness" heuristic that decides when to try, lost A0 bytes, lossy sequences,
/// CESU-8, embedded mojibake and C1 controls), Latin ligatures, fullwidth and halfwidth forms, curly quotes,
/// line breaks, surrogates, terminal escapes, control characters and NFC, repeated until the text is stable.</para>
/// <para>Lower-casing is Python's: full case mapping (U+0130 becomes "i" + U+0307) and the final-sigma rule.
/// The character data (case mappings, white space, letter and number classes, ftfy's categories and code
/// pages, the HTML5 entities) is measured from Python 3.11 (Unicode 14), the regex module and ftfy 6.3, so
/// results do not depend on the .NET runtime's own Unicode version; NFC is the runtime's.</para>
/// </remarks>
public static class ClipTextCleaner
{
    /// <summary>
    /// Applies CLIP's whole clean-up: <c>whitespace_clean(basic_clean(text)).lower()</c> of the reference
    /// <c>simple_tokenizer.py</c>.
    /// </summary>
    /// <param name="text">Raw text.</param>
    /// <returns>The text CLIP's pre-tokenizer sees.</returns>
    public static string Clean(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string basic;
        if (IsPlainAscii(text))
        {
            // Printable ASCII (with tab, line feed, form feed) and no '&': ftfy and html.unescape change nothing.
            basic = text;
        }
        else
        {
            basic = PythonText.HtmlUnescape(PythonText.HtmlUnescape(Ftfy.FixText(text)));
        }
        return PythonText.Lower(CollapseWhitespace(PythonText.Strip(basic)));
    }

    /// <summary>ftfy's <c>fix_text(text)</c> with its default configuration, as CLIP calls it.</summary>
    /// <param name="text">Raw text.</param>
    /// <returns>The fixed text.</returns>
    public static string FixText(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return IsPlainAscii(text) ? text : Ftfy.FixText(text);
    }

    /// <summary>
    /// CLIP's <c>whitespace_clean</c>: every run of white space (the regex module's <c>\s</c>) becomes one space,
    /// then the ends are stripped (Python's <c>str.strip()</c>).
    /// </summary>
    /// <param name="text">Text.</param>
    /// <returns>The collapsed text.</returns>
    public static string CollapseWhitespace(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        StringBuilder? sb = null;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if ((TextCharData.Of(c) & CharFlags.RxSpace) == 0) { sb?.Append(c); continue; }
            int end = i + 1;
            while (end < text.Length && (TextCharData.Of(text[end]) & CharFlags.RxSpace) != 0) end++;
            if (sb is null)
            {
                if (end == i + 1 && c == ' ') continue; // already a single space
                sb = new StringBuilder(text.Length);
                sb.Append(text, 0, i);
            }
            sb.Append(' ');
            i = end - 1;
        }
        return PythonText.Strip(sb?.ToString() ?? text);
    }

    private static bool IsPlainAscii(string text)
    {
        foreach (char c in text)
            if (c is < ' ' and not ('\t' or '\n' or '\f') or > '~' or '&') return false;
        return true;
    }
}
