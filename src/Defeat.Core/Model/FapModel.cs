using Defeat.Backbones;
using Defeat.Checkpoints;
using Defeat.Prompting;
using Defeat.Validation;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Defeat.Model;

/// <summary>
/// FAP (Few-shot Adversarial Prompt learning, Zhou et al., NeurIPS 2024) as a trainable classifier: a frozen
/// deep-prompt backbone, a <see cref="FapPromptLearner"/>, and the objective
/// <c>CE(clean logits, y) + lambda * FapLoss.AdversarialTerm(clean, adversarial)</c>.
/// </summary>
/// <remarks>
/// <para>Forward: images to logits <c>LogitScale * cos(I, t)</c> where both the image feature <c>I</c> and the class text
/// features <c>t</c> come from the prompted encoders. The backbone is frozen here and not registered: parameters and
/// state dict (<c>prompt_learner.*</c>) are the prompts only. <see cref="Training.DefeatTrainer"/> trains it (it attacks
/// <see cref="ITrainableClassifier.AttackTarget"/> and passes the clean images to the loss), and
/// <see cref="Evaluation.RobustnessEvaluator"/> scores it through <see cref="Predictor"/>.</para>
/// </remarks>
public sealed class FapModel : Module<Tensor, Tensor>, ITrainableClassifier
{
#pragma warning disable IDE1006 // PyTorch names: they are the state-dict keys.
    private readonly FapPromptLearner prompt_learner;
#pragma warning restore IDE1006

    /// <summary>Composes the model; freezes the learner's backbone if it is a module.</summary>
    /// <param name="promptLearner">The prompts (they hold the backbone).</param>
    /// <param name="options">The loss weight; defaults when null.</param>
    public FapModel(FapPromptLearner promptLearner, FapModelOptions? options = null) : base(nameof(FapModel))
    {
        ArgumentNullException.ThrowIfNull(promptLearner);
        Options = options ?? new FapModelOptions();
        Options.Validate();
        prompt_learner = promptLearner;
        if (promptLearner.Backbone is nn.Module module)
        {
            foreach (var p in module.parameters()) p.requires_grad = false;
            module.eval();
        }
        RegisterComponents();
    }

    /// <summary>Builds FAP for <paramref name="classNames"/> on <paramref name="backbone"/>.</summary>
    /// <param name="backbone">The frozen backbone; it must implement <see cref="IDeepPromptBackbone"/>.</param>
    /// <param name="classNames">Class names in label order.</param>
    /// <param name="promptOptions">Prompt options; FAP's defaults when null.</param>
    /// <param name="options">Loss options.</param>
    /// <exception cref="ArgumentException">The backbone cannot take deep prompts (or see <see cref="FapPromptLearner"/>).</exception>
    public static FapModel Create(IVisionLanguageBackbone backbone, IReadOnlyList<string> classNames,
        FapPromptLearnerOptions? promptOptions = null, FapModelOptions? options = null) =>
        new(new FapPromptLearner(backbone, classNames, promptOptions), options);

    /// <summary>The validated options.</summary>
    public FapModelOptions Options { get; }

    /// <summary>The prompt learner (submodule <c>prompt_learner</c>).</summary>
    public FapPromptLearner PromptLearner => prompt_learner;

    /// <summary>The classes the prompts were built for, in label order.</summary>
    public IReadOnlyList<string> ClassNames => prompt_learner.ClassNames;

    /// <summary>The frozen backbone.</summary>
    public IDeepPromptBackbone Backbone => prompt_learner.Backbone;

    /// <summary>Logits <c>[B, classes]</c> for pixels <c>[B, C, H, W]</c> in [0, 1], with freshly built prompts.</summary>
    /// <param name="images">Pixels in [0, 1].</param>
    public override Tensor forward(Tensor images)
    {
        CheckImages(images, nameof(images));
        using var scope = NewDisposeScope();
        var prompts = prompt_learner.BuildPrompts();
        return Logits(images, prompts, TextFeatures(prompts)).Logits.MoveToOuterDisposeScope();
    }

    /// <summary>An images-to-logits function whose prompts and text features are built once, without gradient, and reused
    /// on every call (the prompts do not change during an attack or an evaluation); valid until the next optimiser step.
    /// Use it for an <c>EvaluationSubject</c>.</summary>
    public Func<Tensor, Tensor> Predictor()
    {
        DeepPrompts prompts;
        Tensor text;
        using (no_grad())
        {
            prompts = prompt_learner.BuildPrompts();
            text = TextFeatures(prompts);
        }
        return images =>
        {
            CheckImages(images, nameof(images));
            using var scope = NewDisposeScope();
            return Logits(images, prompts, text).Logits.MoveToOuterDisposeScope();
        };
    }

    /// <summary>The FAP objective on adversarial images and the clean images they were made from: CE on the clean
    /// logits plus <see cref="FapModelOptions.AdversarialWeight"/> times <see cref="FapLoss.AdversarialTerm"/>.
    /// Parts: <c>ce</c>, <c>adv</c>.</summary>
    /// <param name="images">Adversarial pixels in [0, 1].</param>
    /// <param name="labels">int64 classes <c>[B]</c>.</param>
    /// <param name="cleanImages">The clean pixels, same shape.</param>
    public TrainingLoss Loss(Tensor images, Tensor labels, Tensor cleanImages)
    {
        CheckImages(images, nameof(images));
        ArgumentNullException.ThrowIfNull(cleanImages);
        if (!cleanImages.shape.SequenceEqual(images.shape))
            throw new ArgumentException($"cleanImages must have the images' shape {TensorChecks.Shape(images)}, got {TensorChecks.Shape(cleanImages)}.", nameof(cleanImages));
        ArgumentNullException.ThrowIfNull(labels);
        if (images.shape[0] == 0)
            throw new ArgumentException("images is an empty batch [0, ...]; the loss needs at least one image.", nameof(images));
        if (labels.dim() != 1 || labels.shape[0] != images.shape[0] || labels.dtype != ScalarType.Int64)
            throw new ArgumentException($"labels must be int64 [{images.shape[0]}], got {labels.dtype} {TensorChecks.Shape(labels)}.", nameof(labels));
        TensorChecks.RequireLabels(labels, images.shape[0], nameof(labels), prompt_learner.ClassNames.Count);

        using var scope = NewDisposeScope();
        var prompts = prompt_learner.BuildPrompts();
        var text = TextFeatures(prompts);
        long batch = images.shape[0];
        // One pass over clean and adversarial images together: the encoder treats each image on its own.
        var both = Logits(cat(new[] { cleanImages, images }, 0), prompts, text);
        var clean = both.Logits[..(int)batch];
        var adversarial = both.Logits[(int)batch..];
        var crossEntropy = functional.cross_entropy(clean, labels);
        var adversarialTerm = FapLoss.AdversarialTerm(clean, adversarial, both.Features[..(int)batch], both.Features[(int)batch..]);
        var total = crossEntropy.Plus(adversarialTerm.Times(Options.AdversarialWeight));
        var parts = new Dictionary<string, Tensor> { ["ce"] = crossEntropy.MoveToOuterDisposeScope(), ["adv"] = adversarialTerm.MoveToOuterDisposeScope() };
        return new TrainingLoss(total.MoveToOuterDisposeScope(), parts);
    }

    /// <summary>Without clean images the adversarial term is 0 (the images are their own clean version): CE only.</summary>
    /// <param name="images">Pixels in [0, 1].</param>
    /// <param name="labels">int64 classes <c>[B]</c>.</param>
    public TrainingLoss Loss(Tensor images, Tensor labels) => Loss(images, labels, images);

    /// <inheritdoc/>
    public IEnumerable<Parameter> TrainableParameters() => parameters().Where(p => p.requires_grad);

    /// <inheritdoc/>
    public IReadOnlyDictionary<string, Tensor> TrainableState() => state_dict();

    /// <inheritdoc/>
    public void LoadTrainableState(IReadOnlyDictionary<string, Tensor> state) => StateDictCopy.CopyInto(state_dict(), state);

    /// <inheritdoc/>
    public Func<Tensor, Tensor> AttackTarget() => Predictor();

    /// <inheritdoc/>
    public void SetTraining(bool training) => train(training);

    private Tensor TextFeatures(DeepPrompts prompts) => functional.normalize(prompt_learner.EncodeTextFeatures(prompts), dim: -1);

    private (Tensor Logits, Tensor Features) Logits(Tensor images, DeepPrompts prompts, Tensor text)
    {
        using var features = Backbone.EncodeImage(images, prompts);
        var image = functional.normalize(features.ClassFeature, dim: -1);
        var scale = Backbone.LogitScale.to(text.dtype, text.device);
        return (scale * image.matmul(text.t()), image);
    }

    private void CheckImages(Tensor images, string name)
    {
        ArgumentNullException.ThrowIfNull(images, name);
        TensorChecks.RequireImages(images, name, Backbone.InputChannels, Backbone.ImageSize);
        var own = parameters().FirstOrDefault();
        if (own is not null) TensorChecks.RequireDevice(images, own.device, name, "the model");
    }
}
