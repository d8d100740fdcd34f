using System.Collections.Concurrent;
using System.IO.Compression;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Clip.Tokenization;

/// <summary>
/// CLIP's byte-level byte-pair-encoding tokenizer: text clean-up (<see cref="ClipTextCleaner"/>), CLIP's
/// pre-tokenisation (contractions, letter runs, single digits, runs of other symbols), UTF-8 bytes mapped
/// to printable characters, BPE merges with an end-of-word marker, ids from CLIP's 49,408-token vocabulary.
/// </summary>
/// <remarks>
/// The merge list (OpenAI, MIT) is embedded in this assembly. Results of the BPE step are cached per word,
/// so repeated words cost one dictionary lookup. Thread-safe.
/// </remarks>
public sealed class ClipTokenizer
{
    /// <summary>Id of <c>&lt;|startoftext|&gt;</c> in CLIP's vocabulary.</summary>
    public const int StartOfText = 49406;

    /// <summary>Id of <c>&lt;|endoftext|&gt;</c> in CLIP's vocabulary.</summary>
    public const int EndOfText = 49407;

    /// <summary>Number of tokens in CLIP's vocabulary.</summary>
    public const int VocabularySize = 49408;

    private const string EndOfWord = "</w>";
    private const string StartToken = "<|startoftext|>";
    private const string EndToken = "<|endoftext|>";
    private static readonly Lazy<ClipTokenizer> LazyDefault = new(() => FromResource());

    private readonly Dictionary<string, int> _encoder;
    private readonly string[] _decoder;
    private readonly Dictionary<(string, string), int> _ranks;
    private readonly string[] _byteToChar;
    private readonly Dictionary<char, byte> _charToByte;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);

    /// <summary>CLIP's tokenizer with the embedded merge list, created on first use.</summary>
    public static ClipTokenizer Default => LazyDefault.Value;

    /// <summary>Builds a tokenizer from a merge list: a header line, then "a b" merges in rank order.</summary>
    /// <param name="mergeLines">All lines of the merge file, header included.</param>
    /// <param name="mergeCount">Merges to use: CLIP uses 48,894 (49,152 - 256 - 2).</param>
    public ClipTokenizer(IReadOnlyList<string> mergeLines, int mergeCount = 49152 - 256 - 2)
    {
        ArgumentNullException.ThrowIfNull(mergeLines);
        if (mergeLines.Count < mergeCount + 1)
            throw new ArgumentException($"the merge list has {mergeLines.Count - 1} merges; expected at least {mergeCount}.", nameof(mergeLines));
        _byteToChar = BytesToPrintable();
        _charToByte = new Dictionary<char, byte>();
        for (int b = 0; b < 256; b++) _charToByte[_byteToChar[b][0]] = (byte)b;

        // Vocabulary order is the byte map's order: printable bytes first, then the remapped ones.
        var byteSymbols = _byteToChar.OrderBy(c => c[0]).ToArray();
        var vocab = new List<string>(VocabularySize);
        vocab.AddRange(byteSymbols);
        vocab.AddRange(byteSymbols.Select(c => c + EndOfWord));
        _ranks = new Dictionary<(string, string), int>(mergeCount);
        for (int i = 0; i < mergeCount; i++)
        {
            var parts = mergeLines[i + 1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length != 2)
                throw new ArgumentException($"merge line {i + 2} is \"{mergeLines[i + 1]}\"; expected two symbols.", nameof(mergeLines));
            _ranks[(parts[0], parts[1])] = i;
            vocab.Add(parts[0] + parts[1]);
        }
        vocab.Add(StartToken);
        vocab.Add(EndToken);
        _decoder = vocab.ToArray();
        _encoder = new Dictionary<string, int>(vocab.Count, StringComparer.Ordinal);
        for (int i = 0; i < _decoder.Length; i++) _encoder[_decoder[i]] = i;
        _cache[StartToken] = [_encoder[StartToken]];
        _cache[EndToken] = [_encoder[EndToken]];
    }

    /// <summary>Reads a tokenizer from a gzip-compressed merge file such as <c>bpe_simple_vocab_16e6.txt.gz</c>.</summary>
    /// <param name="path">Path of the <c>.txt.gz</c> file.</param>
    public static ClipTokenizer FromFile(string path)
    {
        using var stream = File.OpenRead(path);
        return FromGzip(stream);
    }

    private static ClipTokenizer FromResource()
    {
        using var stream = typeof(ClipTokenizer).Assembly.GetManifestResourceStream("Defeat.Clip.bpe_simple_vocab_16e6.txt.gz")
            ?? throw new InvalidOperationException("The embedded CLIP vocabulary is missing from Defeat.Clip.dll.");
        return FromGzip(stream);
    }

    private static ClipTokenizer FromGzip(Stream stream)
    {
        using var gzip = new GZipStream(stream, CompressionMode.Decompress);
        using var reader = new StreamReader(gzip, Encoding.UTF8);
        return new ClipTokenizer(reader.ReadToEnd().Split('\n'));
    }

    /// <summary>Number of tokens in this tokenizer's vocabulary.</summary>
    public int VocabSize => _decoder.Length;

    /// <summary>Id of the start token in this tokenizer's vocabulary (<see cref="StartOfText"/> with CLIP's merges).</summary>
    public int StartOfTextId => _encoder[StartToken];

    /// <summary>Id of the end token in this tokenizer's vocabulary (<see cref="EndOfText"/> with CLIP's merges).</summary>
    public int EndOfTextId => _encoder[EndToken];

    /// <summary>Token ids of one text, without start or end token and without padding.</summary>
    /// <param name="text">Any text; it is cleaned as CLIP cleans it.</param>
    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>();
        var cleaned = ClipTextCleaner.Clean(text);
        foreach (var word in PreTokenize(cleaned))
        {
            var bytes = Encoding.UTF8.GetBytes(word);
            var sb = new StringBuilder(bytes.Length);
            foreach (var b in bytes) sb.Append(_byteToChar[b]);
            ids.AddRange(Bpe(sb.ToString()));
        }
        return ids;
    }

    /// <summary>
    /// Tokenizes texts into <c>[n, contextLength]</c> int64 ids: start token, text ids, end token, zeros.
    /// </summary>
    /// <param name="texts">Texts.</param>
    /// <param name="contextLength">Sequence length (77 for CLIP).</param>
    /// <param name="truncate">When a text is too long: true cuts it and keeps the end token last;
    /// false throws.</param>
    /// <exception cref="ArgumentException">A text is too long and <paramref name="truncate"/> is false.</exception>
    public Tensor Tokenize(IReadOnlyList<string> texts, int contextLength = 77, bool truncate = true)
    {
        ArgumentNullException.ThrowIfNull(texts);
        ArgumentOutOfRangeException.ThrowIfLessThan(contextLength, 2);
        var data = new long[texts.Count * contextLength];
        for (int i = 0; i < texts.Count; i++)
        {
            var ids = Encode(texts[i]);
            int room = contextLength - 2;
            if (ids.Count > room && !truncate)
                throw new ArgumentException(
                    $"text {i} has {ids.Count + 2} tokens with start and end; the context length is {contextLength}.", nameof(texts));
            int n = Math.Min(ids.Count, room);
            int row = i * contextLength;
            data[row] = StartOfTextId;
            for (int j = 0; j < n; j++) data[row + 1 + j] = ids[j];
            data[row + 1 + n] = EndOfTextId;
        }
        return torch.tensor(data, [texts.Count, contextLength], dtype: ScalarType.Int64);
    }

    /// <summary>Turns ids back into text (end-of-word markers become spaces; start and end tokens are kept as text).</summary>
    /// <param name="ids">Token ids.</param>
    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var bytes = new List<byte>();
        var text = new StringBuilder();
        foreach (var id in ids)
        {
            if (id < 0 || id >= _decoder.Length)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"token id {id} is outside the vocabulary [0, {_decoder.Length}).");
            text.Append(_decoder[id]);
        }
        var s = text.ToString().Replace(EndOfWord, "\u0001", StringComparison.Ordinal);
        foreach (var c in s)
        {
            if (c == '\u0001') bytes.Add((byte)' ');
            else if (_charToByte.TryGetValue(c, out var b)) bytes.Add(b);
            else bytes.AddRange(Encoding.UTF8.GetBytes(c.ToString()));
        }
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    /// <summary>
    /// CLIP's pre-tokeniser on cleaned text, as the reference pattern (regex module, IGNORECASE) splits it: the
    /// special tokens, the contractions 's 't 're 've 'm 'll 'd, runs of letters, single numeric characters, and
    /// runs of characters that are neither white space, letters nor numbers; anything else is skipped.
    /// </summary>
    internal static IEnumerable<string> PreTokenize(string text)
    {
        int i = 0;
        while (i < text.Length)
        {
            int literal = MatchLiteral(text, i, StartToken);
            if (literal == 0) literal = MatchLiteral(text, i, EndToken);
            if (literal == 0 && text[i] == '\'')
            {
                foreach (var c in Contractions)
                    if ((literal = MatchLiteral(text, i, c)) > 0) break;
            }
            if (literal > 0) { yield return text.Substring(i, literal); i += literal; continue; }

            int start = i;
            var kind = Kind(text, i, out int width);
            i += width;
            switch (kind)
            {
                case CharKind.Skip:
                    continue;
                case CharKind.Number:
                    yield return text[start..i];
                    continue;
                default:
                    while (i < text.Length && Kind(text, i, out int w) == kind) i += w;
                    yield return text[start..i];
                    continue;
            }
        }
    }

    private static readonly string[] Contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];

    private static readonly Dictionary<char, string> CaseVariants =
        ClipTextTables.LiteralCaseVariants.ToDictionary(p => p.Letter, p => p.Matches);

    // Length of the literal at text[i..] under the regex module's IGNORECASE (e.g. 's' also matches U+017F), or 0.
    private static int MatchLiteral(string text, int i, string literal)
    {
        if (i + literal.Length > text.Length) return 0;
        for (int k = 0; k < literal.Length; k++)
        {
            char want = literal[k], got = text[i + k];
            if (got == want) continue;
            if (!CaseVariants.TryGetValue(want, out var variants) || !variants.Contains(got)) return 0;
        }
        return literal.Length;
    }

    private enum CharKind { Skip, Letter, Number, Other }

    private static CharKind Kind(string text, int i, out int width)
    {
        int cp = TextCharData.CodePointAt(text, i, out width);
        var flags = TextCharData.Of(cp);
        if ((flags & CharFlags.RxLetter) != 0) return CharKind.Letter;
        if ((flags & CharFlags.RxNumber) != 0) return CharKind.Number;
        if ((flags & (CharFlags.RxSpace | CharFlags.RxNeither)) != 0) return CharKind.Skip;
        return CharKind.Other;
    }

    private int[] Bpe(string word)
    {
        if (_cache.TryGetValue(word, out var cached)) return cached;
        var symbols = new List<string>(word.Length);
        for (int i = 0; i < word.Length - 1; i++) symbols.Add(word[i].ToString());
        symbols.Add(word[^1] + EndOfWord);

        while (symbols.Count > 1)
        {
            // The lowest-ranked adjacent pair is merged everywhere it occurs, left to right.
            int bestRank = int.MaxValue;
            (string, string) best = default;
            for (int i = 0; i < symbols.Count - 1; i++)
                if (_ranks.TryGetValue((symbols[i], symbols[i + 1]), out int r) && r < bestRank) { bestRank = r; best = (symbols[i], symbols[i + 1]); }
            if (bestRank == int.MaxValue) break;
            var merged = new List<string>(symbols.Count);
            for (int i = 0; i < symbols.Count; i++)
            {
                if (i < symbols.Count - 1 && symbols[i] == best.Item1 && symbols[i + 1] == best.Item2)
                {
                    merged.Add(best.Item1 + best.Item2);
                    i++;
                }
                else merged.Add(symbols[i]);
            }
            symbols = merged;
        }
        var ids = symbols.Select(s => _encoder[s]).ToArray();
        _cache[word] = ids;
        return ids;
    }

    // GPT-2's reversible map from bytes to printable characters: printable Latin-1 bytes map to themselves,
    // the others to U+0100 onwards, so BPE never sees whitespace or control characters.
    private static string[] BytesToPrintable()
    {
        var map = new string[256];
        bool Printable(int b) => (b >= '!' && b <= '~') || (b >= '\u00A1' && b <= '\u00AC') || (b >= '\u00AE' && b <= '\u00FF');
        int next = 0;
        for (int b = 0; b < 256; b++)
            map[b] = Printable(b) ? ((char)b).ToString() : ((char)(256 + next++)).ToString();
        return map;
    }
}
