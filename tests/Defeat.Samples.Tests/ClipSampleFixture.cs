using Defeat.Samples.Clip;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace Defeat.Tests.Samples;

/// <summary>Checkpoints of Defeat.Clip.Tests' tiny random CLIP, generated images and options that keep a run to seconds.</summary>
internal static class ClipSampleFixture
{
    public static string File(string name) => Path.Combine(TestContext.CurrentContext.TestDirectory, "ClipFixtures", name);

    /// <summary>Folder names of the two classes; the sample reads '_' as a space and sorts folders by ordinal name.</summary>
    public static readonly string[] ClassFolders = ["red_apple", "blue_sky"];

    /// <summary>
    /// Writes <paramref name="perClass"/> PNGs per class (40 x 36, so the preprocessor resizes and crops): noisy reddish
    /// images for red_apple, noisy bluish ones for blue_sky.
    /// </summary>
    public static string ImageFolder(string root, int perClass, int seed = 1)
    {
        var random = new Random(seed);
        foreach (var folder in ClassFolders)
        {
            string dir = Path.Combine(root, folder);
            Directory.CreateDirectory(dir);
            bool red = folder == "red_apple";
            for (int i = 0; i < perClass; i++)
            {
                using var image = new Image<Rgb24>(40, 36);
                for (int y = 0; y < image.Height; y++)
                    for (int x = 0; x < image.Width; x++)
                    {
                        byte strong = (byte)random.Next(150, 256), weak = (byte)random.Next(0, 90), mid = (byte)random.Next(0, 120);
                        image[x, y] = red ? new Rgb24(strong, mid, weak) : new Rgb24(weak, mid, strong);
                    }
                image.SaveAsPng(Path.Combine(dir, $"img_{i}.png"));
            }
        }
        return root;
    }

    /// <summary>Fast settings on the tiny model: 2 shots, 1 epoch, PGD-2 at one radius, no extra curve points.</summary>
    public static ClipSampleOptions Quick(string clip, string output) => new()
    {
        ClipPath = clip,
        Output = output,
        Shots = 2,
        Epochs = 1,
        BatchSize = 4,
        PgdSteps = 2,
        Epsilons = [4.0 / 255],
        CurveEpsilons = [0, 4.0 / 255],
        CurveSteps = [2],
        CodebookSize = 16,
        VisionHeads = 2,
        TextHeads = 2,
        MergesPath = File("tiny_merges.txt"),
    };
}
