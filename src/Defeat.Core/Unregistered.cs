namespace Defeat;

/// <summary>
/// Holds a module or tensor outside the module tree. <c>RegisterComponents()</c> registers every field whose type is
/// a TorchSharp module or tensor; a field of this type is neither, so what it holds never joins the owner's
/// <c>parameters()</c>, <c>state_dict()</c>, <c>train()</c>/<c>eval()</c> or <c>to()</c>. Used for the frozen
/// backbone of a model, the text encoder of a prompt learner, and fixed text features of a classifier view.
/// </summary>
/// <typeparam name="T">What is held.</typeparam>
/// <param name="value">The object to hold by reference.</param>
internal sealed class Unregistered<T>(T value) where T : class
{
    /// <summary>The held object.</summary>
    public T Value { get; } = value;
}
