using Defeat.Backbones;
using static TorchSharp.torch;

namespace Defeat.Prompting;

/// <summary>
/// Hand-written prompt templates, in which <c>{0}</c> marks the class name: the library's default template, the one
/// template check, and the one prompt ensemble (template-averaged class text features).
/// </summary>
public static class PromptTemplates
{
    /// <summary>CLIP's hand-written prompt <c>"a photo of a {0}."</c>: the default of zero-shot classification and of
    /// DEFEAT's text regulariser.</summary>
    public const string Default = "a photo of a {0}.";

    /// <summary>The marker a template holds where the class name goes.</summary>
    public const string ClassNameMarker = "{0}";

    /// <summary><paramref name="template"/> with <paramref name="className"/> in place of every <c>{0}</c> (plain text
    /// replacement: no other braces are interpreted).</summary>
    /// <param name="template">A template such as <see cref="Default"/>.</param>
    /// <param name="className">The class name.</param>
    public static string Fill(string template, string className)
    {
        ArgumentNullException.ThrowIfNull(template);
        ArgumentNullException.ThrowIfNull(className);
        return template.Replace(ClassNameMarker, className, StringComparison.Ordinal);
    }

    /// <summary>Requires at least one template and <c>{0}</c> in each; throws an <see cref="ArgumentException"/> naming
    /// <paramref name="name"/> otherwise.</summary>
    /// <param name="templates">The templates.</param>
    /// <param name="name">The argument or option name reported.</param>
    public static void Validate(IReadOnlyList<string>? templates, string name)
    {
        if (templates is null || templates.Count == 0)
            throw new ArgumentException($"{name} must hold at least one template such as \"{Default}\", got none.", name);
        foreach (var template in templates)
            if (template is null || !template.Contains(ClassNameMarker, StringComparison.Ordinal))
                throw new ArgumentException($"{name} must mark the class name with {ClassNameMarker} in every template, got \"{template}\".", name);
    }

    /// <summary>
    /// Text features of <paramref name="classNames"/> from hand-written templates, <c>[classes, D]</c>, unit rows: each
    /// template is filled with every class name and encoded, the features are L2-normalised, averaged over the
    /// templates and normalised again (CLIP's prompt ensembling).
    /// </summary>
    /// <param name="encoder">The text encoder (tokenizer and transformer).</param>
    /// <param name="classNames">Class names, in label order, used as given.</param>
    /// <param name="templates">Templates (see <see cref="Validate"/>).</param>
    public static Tensor ClassFeatures(ITextEncoder encoder, IReadOnlyList<string> classNames, IReadOnlyList<string> templates)
    {
        ArgumentNullException.ThrowIfNull(encoder);
        ArgumentNullException.ThrowIfNull(classNames);
        if (classNames.Count == 0)
            throw new ArgumentException($"{nameof(classNames)} must hold at least one class name, got none.", nameof(classNames));
        Validate(templates, nameof(templates));
        using var scope = NewDisposeScope();
        Tensor? sum = null;
        foreach (var template in templates)
        {
            var texts = classNames.Select(n => Fill(template, n)).ToArray();
            var features = nn.functional.normalize(encoder.EncodeText(encoder.Tokenize(texts)), dim: -1);
            sum = sum is null ? features : sum.Plus(features);
        }
        return nn.functional.normalize(sum!.Over(templates.Count), dim: -1).MoveToOuterDisposeScope();
    }
}
