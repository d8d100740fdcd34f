using Defeat.Attacks;
using Defeat.Clip;
using Defeat.Data;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;
using Defeat.Samples.Shared;

namespace Defeat.Samples.FashionMnist;

/// <summary>
/// Makes the sample's backbone: a small CLIP (28x28 grey images, 4x4 patches: the 7x7 grid of ViT-B/32)
/// trained from scratch by contrastive image-caption learning, then adversarially fine-tuned image
/// tower first (TeCoA: PGD examples against the frozen text features of hand-written prompts), as the
/// paper starts DEFEAT from TeCoA weights.
/// </summary>
/// <remarks>
/// Captions come from several templates filled with the image's class name. With ten classes a batch
/// holds many images of one class, so the contrastive loss is taken over the classes' captions
/// (image-to-text cross-entropy against one caption per class, template drawn at random each step)
/// rather than over the batch's own captions, which would make same-class pairs false negatives.
/// </remarks>
public sealed class BackboneBuilder(BackboneSettings settings, ILogger logger)
{
    /// <summary>The CLIP sizes these settings give.</summary>
    public ClipConfig Config => ClipConfig.Tiny(imageResolution: 28, patchSize: 4, inputChannels: 1,
        width: settings.Width, layers: settings.Layers, heads: settings.Heads, embedDim: settings.EmbedDim);

    /// <summary>Trains a backbone on <paramref name="pool"/>, which must not hold the few-shot images.</summary>
    public ClipModel Build(LabeledImages pool, IProgress<StageProgress>? progress, CancellationToken cancellationToken)
    {
        torch.manual_seed(settings.Seed);
        var model = new ClipModel(Config);
        model.InitializeParameters(settings.Seed);

        var random = new Random(settings.Seed);
        var order = Enumerable.Range(0, (int)pool.Count).OrderBy(_ => random.Next()).Take(settings.PretrainImages).Select(i => (long)i).ToList();
        using var images = pool.Subset(order);

        Contrastive(model, images, random, progress, cancellationToken);
        Tecoa(model, images, progress, cancellationToken);
        model.eval();
        return model;
    }

    private void Contrastive(ClipModel model, LabeledImages images, Random random, IProgress<StageProgress>? progress, CancellationToken ct)
    {
        model.train();
        var optimizer = optim.AdamW(model.parameters(), settings.ContrastiveLearningRate, weight_decay: 0.05);
        int steps = StepsPerEpoch(images) * settings.ContrastiveEpochs, step = 0;
        var classes = images.ClassNames;
        var templates = CaptionTemplates.Pretraining;
        for (int epoch = 0; epoch < settings.ContrastiveEpochs; epoch++)
        {
            foreach (var (x, y) in Batches(images, epoch))
            {
                ct.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                scope.Attach([x, y]); // the batch belongs to this step
                var captions = classes.Select(c => string.Format(templates[random.Next(templates.Count)], c)).ToList();
                var text = nn.functional.normalize(model.EncodeText(model.Tokenize(captions)), dim: -1);
                using var features = model.EncodeImage(x);
                var logits = model.LogitScale * nn.functional.normalize(features.ClassFeature, dim: -1).matmul(text.t());
                var loss = nn.functional.cross_entropy(logits, y);
                optimizer.zero_grad();
                loss.backward();
                optimizer.step();
                ClampLogitScale(model);
                step++;
                if (step % 10 == 0 || step == steps)
                {
                    float l = loss.item<float>();
                    progress?.Report(new StageProgress("backbone: contrastive", step, steps, $"loss {l:F3}"));
                    logger.LogDebug("contrastive step {Step}/{Steps} loss {Loss:F4}", step, steps, l);
                }
            }
        }
    }

    private void Tecoa(ClipModel model, LabeledImages images, IProgress<StageProgress>? progress, CancellationToken ct)
    {
        using var text = ClassText(model, images.ClassNames);
        // Only the image tower moves; the text side stays as contrastive training left it.
        var imageParameters = model.Visual.parameters().ToList();
        foreach (var (name, p) in model.named_parameters())
            p.requires_grad = name.StartsWith("visual.", StringComparison.Ordinal);
        var optimizer = optim.AdamW(imageParameters, settings.TecoaLearningRate, weight_decay: 0.05);
        var attack = new PgdAttack(new PgdOptions
        {
            Epsilon = settings.TecoaEpsilon,
            StepSize = 2 * settings.TecoaEpsilon / settings.TecoaSteps,
            Steps = settings.TecoaSteps,
            RandomStart = true,
            Seed = (ulong)settings.Seed,
        });

        int steps = StepsPerEpoch(images) * settings.TecoaEpochs, step = 0;
        for (int epoch = 0; epoch < settings.TecoaEpochs; epoch++)
        {
            foreach (var (x, y) in Batches(images, 1000 + epoch))
            {
                ct.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                scope.Attach([x, y]);
                Tensor Logits(Tensor pixels) => ZeroShot(model, pixels, text);
                model.eval();
                var adversarial = attack.Perturb(Logits, x, y, ct);
                model.train();
                var loss = nn.functional.cross_entropy(Logits(adversarial), y);
                optimizer.zero_grad();
                loss.backward();
                optimizer.step();
                step++;
                if (step % 5 == 0 || step == steps)
                {
                    float l = loss.item<float>();
                    progress?.Report(new StageProgress("backbone: TeCoA", step, steps, $"adv loss {l:F3}"));
                    logger.LogDebug("TeCoA step {Step}/{Steps} loss {Loss:F4}", step, steps, l);
                }
            }
        }
        foreach (var p in model.parameters()) p.requires_grad = true;
    }

    /// <summary>Text features of hand-written prompts for each class, unit norm, no gradient.</summary>
    public static Tensor ClassText(ClipModel model, IReadOnlyList<string> classNames)
    {
        using var noGrad = no_grad();
        return model.ClassTextFeatures(classNames);
    }

    /// <summary>Zero-shot logits of the class feature against fixed class text features.</summary>
    public static Tensor ZeroShot(ClipModel model, Tensor pixels, Tensor classText)
    {
        using var scope = NewDisposeScope();
        using var features = model.EncodeImage(pixels);
        var logits = model.LogitScale * nn.functional.normalize(features.ClassFeature, dim: -1).matmul(classText.t());
        return logits.MoveToOuterDisposeScope();
    }

    private int StepsPerEpoch(LabeledImages images) => (int)((images.Count + settings.BatchSize - 1) / settings.BatchSize);

    private IEnumerable<(Tensor Images, Tensor Labels)> Batches(LabeledImages set, int epoch)
    {
        var order = randperm(set.Count, generator: new Generator((ulong)(settings.Seed * 7919 + epoch)));
        for (long start = 0; start < set.Count; start += settings.BatchSize)
        {
            using var index = order.narrow(0, start, Math.Min(settings.BatchSize, set.Count - start));
            yield return (set.Images.index_select(0, index), set.Labels.index_select(0, index));
        }
        order.Dispose();
    }

    private static void ClampLogitScale(ClipModel model)
    {
        // CLIP clips the learned temperature at 100 to keep training stable.
        using var noGrad = no_grad();
        foreach (var (name, p) in model.named_parameters())
            if (name == "logit_scale") p.Clamp_(0, Math.Log(100));
    }
}
