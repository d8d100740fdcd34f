using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Defeat.Model;

/// <summary>
/// What the trainer (<c>Defeat.Training.DefeatTrainer</c>) needs of a model: its trainable parameters and state, the logits
/// the training attack maximises, and the objective on (adversarial) images.
/// </summary>
/// <remarks>
/// DEFEAT's model implements it; so can a baseline (adversarial prompt tuning without the shield)
/// or a user's own defence, and the same trainer then trains each.
/// </remarks>
public interface ITrainableClassifier
{
    /// <summary>The classes the model was built for, in label order; the trainer refuses a data set with another count.
    /// Null (the default) when the model does not say.</summary>
    IReadOnlyList<string>? ClassNames => null;

    /// <summary>The parameters the optimiser updates; a frozen backbone's are not among them.</summary>
    IEnumerable<Parameter> TrainableParameters();

    /// <summary>The trainable state by name (parameters and buffers such as EMA codebooks), for checkpoints.</summary>
    IReadOnlyDictionary<string, Tensor> TrainableState();

    /// <summary>Copies a state written by <see cref="TrainableState"/> back in.</summary>
    /// <exception cref="ArgumentException">A key is missing or unexpected, or a shape differs; the message lists each.</exception>
    void LoadTrainableState(IReadOnlyDictionary<string, Tensor> state);

    /// <summary>
    /// The function whose logits <c>[B, classes]</c> the training attack maximises the loss of (DEFEAT: the fused
    /// logits). Called once per batch; the function may cache what does not depend on the images (DEFEAT's
    /// text features) across the attack's steps, and is valid until the next optimiser step.
    /// </summary>
    Func<Tensor, Tensor> AttackTarget();

    /// <summary>The training objective on a batch: the total loss to minimise and its named parts (for logs).</summary>
    TrainingLoss Loss(Tensor images, Tensor labels);

    /// <summary>
    /// The training objective on adversarial images, given the clean images they were made from (what
    /// <see cref="Training.DefeatTrainer"/> calls). By default the clean images are ignored: <c>Loss(images, labels)</c>. DEFEAT uses
    /// them for its optional code-consistency loss.
    /// </summary>
    /// <param name="images">The (adversarial) images trained on.</param>
    /// <param name="labels">int64 <c>[B]</c> classes.</param>
    /// <param name="cleanImages">The clean images <paramref name="images"/> were made from, same shape.</param>
    TrainingLoss Loss(Tensor images, Tensor labels, Tensor cleanImages) => Loss(images, labels);

    /// <summary>Switches between training mode (quantizer updates, dead-code restarts) and evaluation mode.</summary>
    void SetTraining(bool training);
}

/// <summary>A training objective's value on one batch.</summary>
/// <param name="Total">The scalar to minimise.</param>
/// <param name="Parts">Named scalar parts (cross-entropy, alignment, ...), for logs; they need not sum to <paramref name="Total"/>.</param>
public sealed record TrainingLoss(Tensor Total, IReadOnlyDictionary<string, Tensor> Parts);
