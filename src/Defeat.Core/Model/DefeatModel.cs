using Defeat.Checkpoints;
using Defeat.Backbones;
using Defeat.Fusion;
using Defeat.Prompting;
using Defeat.Shield;
using Defeat.Validation;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Defeat.Model;

/// <summary>
/// DEFEAT as one module: frozen backbone, learned prompts, PerturbShield and logit fusion, with
/// every loss term of the objective <c>L = CE + lambda * L_reg^I + mu * L_reg^T + L_VQVAE</c>.
/// </summary>
/// <remarks>
/// <para>Forward: the backbone gives the class feature <c>I</c> and the grid; the prompt learner's text
/// features <c>t</c> are computed once per forward and shared by both branches; clean logits are
/// <c>LogitScale * cos(I, t)</c>, robust logits <c>LogitScale * cos(W · VQVAE(grid), t)</c>, and the fusion
/// combines them.</para>
/// <para>Trainable: the prompt context, the VQ-VAE, W (and a learnable fusion weight if chosen). The
/// backbone is frozen at construction (its parameters' <c>requires_grad</c> set to false, eval mode) and is
/// deliberately <b>not</b> registered as a submodule: <c>parameters()</c>, <c>state_dict()</c>,
/// <c>train()</c>/<c>eval()</c> and <c>to()</c> of this module cover the trainable parts only, so a checkpoint
/// (<see cref="TrainableStateDict"/>) holds no backbone weights. Move the backbone to a device yourself.</para>
/// <para>Submodule names: <c>prompt_learner</c>, <c>shield</c>, <c>fusion</c> (each registered when it is a TorchSharp module).</para>
/// </remarks>
public sealed class DefeatModel : Module<Tensor, Tensor, DefeatOutput>, ITrainableClassifier
{
    private readonly Unregistered<IVisionLanguageBackbone> _backbone;
    private readonly IPromptLearner prompt_learner;
    private readonly IPerturbShield? shield;
    private readonly ILogitFusion? fusion;

    /// <summary>Composes the parts.</summary>
    /// <param name="backbone">The frozen vision-language backbone; frozen here if it is a module.</param>
    /// <param name="promptLearner">The text side (built on the same backbone's text encoder).</param>
    /// <param name="shield">The robust branch; required unless <see cref="DefeatModelOptions.UseShield"/> is false.</param>
    /// <param name="fusion">The fusion; <see cref="LogitFusion"/> with its defaults when null.</param>
    /// <param name="options">Loss weights and switches; defaults when null.</param>
    public DefeatModel(IVisionLanguageBackbone backbone, IPromptLearner promptLearner, IPerturbShield? shield,
        ILogitFusion? fusion = null, DefeatModelOptions? options = null) : base(nameof(DefeatModel))
    {
        ArgumentNullException.ThrowIfNull(backbone);
        ArgumentNullException.ThrowIfNull(promptLearner);
        Options = options ?? new DefeatModelOptions();
        Options.Validate();
        if (Options.UseShield)
        {
            if (shield is null)
                throw new ArgumentNullException(nameof(shield), "A shield is required when DefeatModelOptions.UseShield is true.");
            var (h, w) = backbone.GridSize;
            if (shield.FeatureDim != backbone.FeatureDim || shield.GridPositions != h * w)
                throw new ArgumentException($"The shield expects grids [B, {shield.GridPositions}, {shield.FeatureDim}] but the backbone gives [B, {h * w}, {backbone.FeatureDim}] ({h} x {w} grid).", nameof(shield));
            this.shield = shield;
            this.fusion = fusion ?? new LogitFusion();
        }

        _backbone = new(backbone);
        prompt_learner = promptLearner;
        if (backbone is nn.Module module)
        {
            foreach (var p in module.parameters()) p.requires_grad = false;
            module.eval();
        }
        RegisterComponents();
    }

    /// <summary>Builds DEFEAT with its default parts for <paramref name="classNames"/>: a <see cref="PromptLearner"/>,
    /// a <see cref="PerturbShield"/> sized from the backbone (its feature width and grid) and a <see cref="LogitFusion"/>.</summary>
    /// <param name="backbone">The frozen backbone.</param>
    /// <param name="classNames">Class names in label order.</param>
    /// <param name="options">Model options.</param>
    /// <param name="promptOptions">Prompt learner options.</param>
    /// <param name="shieldOptions">Shield options; FeatureDim and the grid are taken from the backbone.</param>
    /// <param name="fusionOptions">Fusion options.</param>
    public static DefeatModel Create(IVisionLanguageBackbone backbone, IReadOnlyList<string> classNames,
        DefeatModelOptions? options = null, PromptLearnerOptions? promptOptions = null,
        PerturbShieldOptions? shieldOptions = null, LogitFusionOptions? fusionOptions = null)
    {
        ArgumentNullException.ThrowIfNull(backbone);
        options ??= new DefeatModelOptions();
        var learner = new PromptLearner(backbone, classNames, promptOptions);
        PerturbShield? shield = null;
        LogitFusion? fusion = null;
        if (options.UseShield)
        {
            var (h, w) = backbone.GridSize;
            shield = new PerturbShield((shieldOptions ?? new PerturbShieldOptions()) with { FeatureDim = backbone.FeatureDim, GridHeight = h, GridWidth = w });
            fusion = new LogitFusion(fusionOptions);
        }
        return new DefeatModel(backbone, learner, shield, fusion, options);
    }

    /// <summary>The validated options.</summary>
    public DefeatModelOptions Options { get; }

    /// <summary>The frozen backbone (not a registered submodule).</summary>
    public IVisionLanguageBackbone Backbone => _backbone.Value;

    /// <summary>The prompt learner.</summary>
    public IPromptLearner PromptLearner => prompt_learner;

    /// <summary>The classes the prompts were built for, in label order.</summary>
    public IReadOnlyList<string> ClassNames => prompt_learner.ClassNames;

    /// <summary>The shield; null when <see cref="DefeatModelOptions.UseShield"/> is false.</summary>
    public IPerturbShield? Shield => shield;

    /// <summary>The fusion; null when <see cref="DefeatModelOptions.UseShield"/> is false.</summary>
    public ILogitFusion? Fusion => fusion;

    /// <summary>The parameters an optimiser should train: those of this module with <c>requires_grad</c> (never the backbone's).</summary>
    public IEnumerable<Parameter> TrainableParameters() => parameters().Where(p => p.requires_grad);

    /// <summary>The state to checkpoint: every parameter and persistent buffer of the trainable parts
    /// (keys <c>prompt_learner.ctx</c>, <c>shield.vqvae.*</c>, <c>shield.cls_projection.*</c>, ...), without the backbone.</summary>
    public Dictionary<string, Tensor> TrainableStateDict() => state_dict();

    /// <summary>Loads a state written by <see cref="TrainableStateDict"/> (a checkpoint), strictly.</summary>
    /// <exception cref="ArgumentException">Keys missing or unexpected, or shapes differ (for example another class
    /// count or codebook size); every problem is listed.</exception>
    public void LoadTrainableStateDict(IReadOnlyDictionary<string, Tensor> state) => StateDictCopy.CopyInto(state_dict(), state);

    IReadOnlyDictionary<string, Tensor> ITrainableClassifier.TrainableState() => TrainableStateDict();

    void ITrainableClassifier.LoadTrainableState(IReadOnlyDictionary<string, Tensor> state) => LoadTrainableStateDict(state);

    Func<Tensor, Tensor> ITrainableClassifier.AttackTarget()
    {
        // The prompts do not change during an attack: encode them once (no graph) for all of its steps.
        Tensor text;
        using (no_grad()) text = TextFeatures();
        return images => Logits(images, Branch.Fused, text);
    }

    TrainingLoss ITrainableClassifier.Loss(Tensor images, Tensor labels) => TrainingLossOf(forward(images, labels, null));

    TrainingLoss ITrainableClassifier.Loss(Tensor images, Tensor labels, Tensor cleanImages) => TrainingLossOf(forward(images, labels, cleanImages));

    private TrainingLoss TrainingLossOf(DefeatOutput output)
    {
        var parts = new Dictionary<string, Tensor> { ["ce"] = output.CrossEntropy };
        if (shield is not null)
        {
            parts["align"] = output.AlignmentLoss;
            parts["vqvae"] = output.VqVaeLoss;
            parts["perplexity"] = output.Perplexity;
        }
        if (Options.UseLearnedPrompts) parts["text_reg"] = output.TextRegularization;
        if (shield is not null && Options.CodeConsistencyWeight > 0) parts["consistency"] = output.CodeConsistencyLoss;
        return new TrainingLoss(output.Total, parts);
    }

    void ITrainableClassifier.SetTraining(bool training) => train(training);

    /// <summary>
    /// Loads the trainable part of an official DEFEAT checkpoint (<c>CustomCLIP.state_dict()</c>, as saved by the
    /// official trainer): <c>prompt_learner.ctx</c>, <c>vqvae.*</c> and <c>cls_projection.*</c> map to
    /// <c>prompt_learner.ctx</c>, <c>shield.vqvae.*</c> and <c>shield.cls_projection.*</c>. Every other official key
    /// (the CLIP weights, <c>token_prefix</c>/<c>token_suffix</c>, which are rebuilt from the class names) is ignored.
    /// </summary>
    /// <param name="official">The official state dict.</param>
    /// <returns>The keys of this model that were loaded.</returns>
    /// <exception cref="ArgumentException">A trainable key of this model has no official counterpart, or shapes differ.</exception>
    public IReadOnlyList<string> LoadOfficialStateDict(IReadOnlyDictionary<string, Tensor> official)
    {
        ArgumentNullException.ThrowIfNull(official);
        static string Official(string key) =>
            key.StartsWith("shield.", StringComparison.Ordinal) ? key["shield.".Length..] : key;
        var own = state_dict();
        var mapped = own.Keys.Where(k => official.ContainsKey(Official(k))).ToDictionary(k => k, k => official[Official(k)]);
        try
        {
            StateDictCopy.CopyInto(own, mapped);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"The official state dict does not fit (official keys drop the \"shield.\" prefix): {e.Message}", nameof(official), e);
        }
        return mapped.Keys.ToList();
    }

    /// <summary>L2-normalised text features of all classes <c>[classes, D]</c>: the learned prompts', or the hand-written templates' when <see cref="DefeatModelOptions.UseLearnedPrompts"/> is false.</summary>
    public Tensor TextFeatures() => Options.UseLearnedPrompts
        ? functional.normalize(prompt_learner.EncodeTextFeatures(), dim: -1)
        : prompt_learner.HandcraftedTextFeatures;

    /// <summary>Runs DEFEAT on pixels <c>[B, C, H, W]</c> in [0, 1] with int64 labels <c>[B]</c>: logits and every loss term.</summary>
    /// <remarks>Shapes, dtypes, the device and the label range are checked (<see cref="ArgumentException"/>); pixel values
    /// are not (NaN propagates into the logits): attacks and the evaluator check them once per call. An empty batch is refused.</remarks>
    /// <param name="images">Pixels in [0, 1] (normalisation is the backbone's business).</param>
    /// <param name="labels">Class indices.</param>
    public override DefeatOutput forward(Tensor images, Tensor labels) => forward(images, labels, null);

    /// <summary>
    /// Runs DEFEAT on adversarial pixels <paramref name="images"/> made from <paramref name="cleanImages"/>: as
    /// <see cref="forward(Tensor, Tensor)"/>, plus the code-consistency loss when
    /// <see cref="DefeatModelOptions.CodeConsistencyWeight"/> is above 0. The clean images pass the frozen backbone and the
    /// shield's encoder without gradient, only to find their codes; with a weight of 0 they are not used at all.
    /// </summary>
    /// <param name="images">Adversarial pixels in [0, 1] (the images trained on).</param>
    /// <param name="labels">Class indices.</param>
    /// <param name="cleanImages">The clean pixels <paramref name="images"/> were made from, same shape; null leaves the term at 0.</param>
    public DefeatOutput forward(Tensor images, Tensor labels, Tensor? cleanImages)
    {
        CheckImages(images);
        if (cleanImages is not null && !cleanImages.shape.SequenceEqual(images.shape))
            throw new ArgumentException($"cleanImages must have the images' shape {TensorChecks.Shape(images)}, got {TensorChecks.Shape(cleanImages)}.", nameof(cleanImages));
        TensorChecks.RequireLabels(labels, images.shape[0], nameof(labels), prompt_learner.ClassNames.Count);
        if (images.shape[0] == 0)
            throw new ArgumentException("images is an empty batch [0, ...]; the loss needs at least one image.", nameof(images));

        using var scope = NewDisposeScope();
        var pass = Run(images, Branch.Fused);
        var zero = zeros(Array.Empty<long>(), dtype: pass.Logits.dtype, device: pass.Logits.device);
        var crossEntropy = functional.cross_entropy(pass.Logits, labels);
        var alignment = pass.Shield is null ? zero : shield!.AlignmentLoss(pass.ClassFeature, pass.Shield.Projected);
        var textRegularization = Options.UseLearnedPrompts ? prompt_learner.TextRegularizationLoss(pass.TextFeatures) : zero;
        var vqVae = pass.Shield?.Loss ?? zero;
        var consistency = zero;
        if (pass.Shield is not null && cleanImages is not null && Options.CodeConsistencyWeight > 0)
        {
            Tensor cleanGrid;
            using (no_grad())
            {
                using var cleanFeatures = Backbone.EncodeImage(cleanImages);
                cleanGrid = cleanFeatures.GridFeatures.detach();
            }
            consistency = shield!.CodeConsistencyLoss(pass.Shield, cleanGrid);
        }
        var total = crossEntropy
                    .Plus(alignment.Times(Options.AlignmentWeight))
                    .Plus(textRegularization.Times(Options.TextRegularizationWeight))
                    .Plus(vqVae.Times(Options.VqVaeWeight));
        if (Options.CodeConsistencyWeight > 0)
            total = total.Plus(consistency.Times(Options.CodeConsistencyWeight));

        return new DefeatOutput(pass.Logits, pass.Clean, pass.Robust, pass.Shield?.Indices,
            crossEntropy, alignment, textRegularization, vqVae,
            pass.Shield?.ReconstructionLoss ?? zero, pass.Shield?.CodebookLoss ?? zero,
            pass.Shield?.CommitmentLoss ?? zero, pass.Shield?.Perplexity ?? zero, consistency, total).MoveToOuterDisposeScope();
    }

    /// <summary>Logits <c>[B, classes]</c> of one branch for pixels <c>[B, C, H, W]</c> in [0, 1].</summary>
    /// <remarks>Images must be floating point <c>[B, InputChannels, ImageSize, ImageSize]</c> on the model's device
    /// (<see cref="ArgumentException"/> otherwise); pixel values are not checked here. An empty batch gives <c>[0, classes]</c>.
    /// With a single class name the logits are <c>[B, 1]</c> and every prediction is that class.</remarks>
    /// <param name="images">Pixels in [0, 1].</param>
    /// <param name="branch">Fused, clean or robust (robust and fused need the shield; without it fused is the clean branch).</param>
    /// <param name="textFeatures">Precomputed <see cref="TextFeatures"/> <c>[classes, D]</c> to reuse (e.g. for every step of an
    /// attack, during which the prompts do not change); null computes them.</param>
    public Tensor Logits(Tensor images, Branch branch = Branch.Fused, Tensor? textFeatures = null)
    {
        CheckImages(images);
        if (branch == Branch.Robust && shield is null)
            throw new InvalidOperationException("The robust branch needs the shield (DefeatModelOptions.UseShield is false).");
        if (textFeatures is not null) CheckTextFeatures(textFeatures);
        using var scope = NewDisposeScope();
        var pass = Run(images, branch, textFeatures);
        var logits = branch switch
        {
            Branch.Clean => pass.Clean,
            Branch.Robust => pass.Robust!,
            _ => pass.Logits,
        };
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>The shield's codeword index of every grid position, int64 <c>[B, N]</c>, for pixels <c>[B, C, H, W]</c> in [0, 1]
    /// (the codeword flip rate and code usage of an evaluation); each index is below <see cref="IPerturbShield.CodebookSize"/>.</summary>
    /// <remarks>Images are checked as in <see cref="Logits"/>. Runs the backbone and the shield only (no text side).</remarks>
    /// <param name="images">Pixels in [0, 1].</param>
    /// <exception cref="InvalidOperationException">The model has no shield (<see cref="DefeatModelOptions.UseShield"/> is false).</exception>
    public Tensor CodeIndices(Tensor images)
    {
        CheckImages(images);
        if (shield is null)
            throw new InvalidOperationException("Code indices need the shield (DefeatModelOptions.UseShield is false).");
        using var scope = NewDisposeScope();
        return shield.Shield(Backbone.EncodeImage(images).GridFeatures).Indices.MoveToOuterDisposeScope();
    }

    /// <summary>An images-to-logits module for one branch, for attacks and evaluation. It holds this model as its
    /// submodule <c>model</c>, so an attack that protects a module's state protects this model's.</summary>
    /// <param name="branch">Which logits the view returns.</param>
    /// <param name="textFeatures">Text features to reuse on every call (see <see cref="Logits"/>); null recomputes them per call.
    /// Pass <c>TextFeatures()</c> computed under <c>no_grad</c> when attacking: the prompts do not change during an attack,
    /// and re-encoding every class prompt at every step is the text encoder's whole cost again.</param>
    /// <exception cref="ArgumentException"><paramref name="textFeatures"/> is not <c>[classes, D]</c> on the model's device.</exception>
    public Module<Tensor, Tensor> AsClassifier(Branch branch = Branch.Fused, Tensor? textFeatures = null)
    {
        if (textFeatures is not null) CheckTextFeatures(textFeatures);
        return new DefeatClassifier(this, branch, textFeatures);
    }

    // Called inside the caller's dispose scope, which collects every intermediate (the image features included).
    private Pass Run(Tensor images, Branch branch, Tensor? textFeatures = null)
    {
        var features = Backbone.EncodeImage(images);
        var text = textFeatures ?? TextFeatures();
        var classFeature = features.ClassFeature;
        // A width or dtype mismatch in the matrix products below aborts the process inside libtorch.
        if (text.dim() != 2 || classFeature.dim() != 2 || text.shape[1] != classFeature.shape[1] || text.dtype != classFeature.dtype)
        {
            string detail = $"the image features are {classFeature.dtype} {TensorChecks.Shape(classFeature)}, the text features {text.dtype} {TensorChecks.Shape(text)}";
            if (textFeatures is not null)
                throw new ArgumentException($"textFeatures must be {classFeature.dtype} [classes={prompt_learner.ClassNames.Count}, D={classFeature.shape[^1]}] " +
                    $"like the backbone's image features; {detail}.", nameof(textFeatures));
            throw new InvalidOperationException($"The backbone's image and text features do not match: {detail}; expected one width and dtype.");
        }
        var scale = Backbone.LogitScale.to(text.dtype, text.device);
        var clean = scale * functional.normalize(classFeature, dim: -1).matmul(text.t());
        if (shield is null || branch == Branch.Clean)
            return new Pass(clean, clean, null, null, classFeature, text);

        var shielded = shield.Shield(features.GridFeatures);
        var robust = scale * functional.normalize(shielded.Projected, dim: -1).matmul(text.t());
        var fused = branch == Branch.Robust ? robust : fusion!.Fuse(clean, robust);
        return new Pass(fused, clean, robust, shielded, classFeature, text);
    }

    // Rows, width and device here; the dtype against the image features in Run, where they are known.
    private void CheckTextFeatures(Tensor textFeatures)
    {
        int classes = prompt_learner.ClassNames.Count, width = Backbone.FeatureDim;
        if (textFeatures.dim() != 2 || textFeatures.shape[0] != classes || textFeatures.shape[1] != width || !textFeatures.is_floating_point())
            throw new ArgumentException($"textFeatures must be floating-point [classes={classes}, D={width}] (TextFeatures()), " +
                $"got {textFeatures.dtype} {TensorChecks.Shape(textFeatures)}.", nameof(textFeatures));
        var own = parameters().FirstOrDefault();
        if (own is not null) TensorChecks.RequireDevice(textFeatures, own.device, nameof(textFeatures), "the model");
    }

    // Shape, dtype and device only: the model runs at every attack step, so pixel values are the
    // attack's and the evaluator's business (see TensorChecks.RequirePixelRange).
    private void CheckImages(Tensor images)
    {
        TensorChecks.RequireImages(images, nameof(images), Backbone.InputChannels, Backbone.ImageSize);
        var own = parameters().FirstOrDefault();
        if (own is not null) TensorChecks.RequireDevice(images, own.device, nameof(images), "the model");
    }

    private sealed record Pass(Tensor Logits, Tensor Clean, Tensor? Robust, ShieldOutput? Shield, Tensor ClassFeature, Tensor TextFeatures);
}
