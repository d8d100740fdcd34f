using BenchmarkDotNet.Attributes;
using Defeat.Clip.Tokenization;

namespace Defeat.Benchmarks;

/// <summary>
/// CLIP's tokenizer (clean-up, pre-tokenisation, cached BPE) on 20,000 captions of three kinds: plain ASCII
/// prompts, accented and non-Latin text (the whole ftfy pipeline runs, nothing to repair), and mojibake (ftfy
/// re-decodes). Each benchmark encodes all 20,000 texts with the shared tokenizer (its BPE cache is warm after
/// the first iteration, as in training, where the same class prompts recur). Two hostile inputs are cleaned once
/// per operation: 1.48 million characters of mojibake on one line, and an entity nested 16,000 deep (ftfy's fix loop peels one
/// level per round, so its cost grows with the square of the depth, as in the reference).
/// </summary>
[MemoryDiagnoser]
public class TokenizerBenchmarks
{
    private const int Count = 20_000;
    private string[] _ascii = [];
    private string[] _unicode = [];
    private string[] _mojibake = [];
    private string _longMojibake = "";
    private string _nestedEntity = "";

    [GlobalSetup]
    public void Setup()
    {
        string[] classes = ["T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
            "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
        string[] templates = ["a photo of a {0}.", "a blurry photo of a {0}.", "a black and white photo of the {0}.",
            "a low resolution photo of a {0}.", "a photo of the large {0}, 3 of 10.", "It's a {0}!"];
        string[] words = ["café", "crème brûlée", "naïve", "Straße", "Ελληνικά", "кошка", "猫の写真", "这是一只猫", "صورة",
            "“quoted”", "déjà vu", "Ünïcödé", "😀", "ﬁne", "ＦＵＬＬ", "İstanbul", "ΟΔΥΣΣΕΥΣ"];
        var rng = new Random(7);
        _ascii = new string[Count];
        _unicode = new string[Count];
        _mojibake = new string[Count];
        var latin1 = System.Text.Encoding.Latin1;
        for (int i = 0; i < Count; i++)
        {
            var caption = string.Format(System.Globalization.CultureInfo.InvariantCulture,
                templates[rng.Next(templates.Length)], classes[rng.Next(classes.Length)]);
            _ascii[i] = caption;
            _unicode[i] = caption + " " + words[rng.Next(words.Length)] + " " + words[rng.Next(words.Length)];
            // UTF-8 bytes read as latin-1: the commonest mojibake ("cafÃ©").
            _mojibake[i] = latin1.GetString(System.Text.Encoding.UTF8.GetBytes(_unicode[i]));
        }
        _longMojibake = latin1.GetString(System.Text.Encoding.UTF8.GetBytes(
            string.Concat(Enumerable.Repeat("café crème naïve “quoted” 猫 ", 40_000))));
        _nestedEntity = "&" + string.Concat(Enumerable.Repeat("amp;", 16_000));
    }

    [Benchmark(Baseline = true)]
    public int EncodeAsciiCaptions() => EncodeAll(_ascii);

    [Benchmark]
    public int EncodeUnicodeCaptions() => EncodeAll(_unicode);

    [Benchmark]
    public int EncodeMojibakeCaptions() => EncodeAll(_mojibake);

    [Benchmark]
    public int CleanLongMojibakeLine() => ClipTextCleaner.Clean(_longMojibake).Length;

    [Benchmark]
    public int CleanNestedEntity16000() => ClipTextCleaner.Clean(_nestedEntity).Length;

    private static int EncodeAll(string[] texts)
    {
        int total = 0;
        foreach (var text in texts) total += ClipTokenizer.Default.Encode(text).Count;
        return total;
    }
}
