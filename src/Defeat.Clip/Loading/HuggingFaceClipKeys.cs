using System.Text.RegularExpressions;
using TorchSharp;
using static TorchSharp.torch;

namespace Defeat.Clip.Loading;

/// <summary>
/// Maps the Hugging Face <c>transformers</c> layout of CLIP (<c>CLIPModel</c>'s <c>model.safetensors</c>) onto
/// OpenAI's keys: separate q/k/v projections are concatenated into <c>in_proj</c>, layer norms and MLP layers
/// are renamed, and the two projections (stored as <c>Linear</c> weights) are transposed.
/// </summary>
public static partial class HuggingFaceClipKeys
{
    [GeneratedRegex(@"^(vision_model|text_model)\.encoder\.layers\.(\d+)\.(.+)$")]
    private static partial Regex LayerKey();

    /// <summary>Whether a state dict is in the Hugging Face layout.</summary>
    /// <param name="keys">Its keys.</param>
    public static bool IsHuggingFaceLayout(IEnumerable<string> keys) =>
        keys.Any(k => k.StartsWith("vision_model.", StringComparison.Ordinal) || k.StartsWith("text_model.", StringComparison.Ordinal));

    /// <summary>
    /// Converts a Hugging Face CLIP state dict to OpenAI's keys. Tensors are moved or concatenated, never
    /// copied twice; <c>position_ids</c> buffers are dropped; keys it does not know are kept unchanged so the
    /// caller's key check reports them.
    /// </summary>
    /// <param name="hf">Tensors by Hugging Face name; the caller keeps ownership of the input tensors.</param>
    public static Dictionary<string, Tensor> ToOpenAi(IReadOnlyDictionary<string, Tensor> hf)
    {
        ArgumentNullException.ThrowIfNull(hf);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var qkv = new Dictionary<string, Tensor?[]>(StringComparer.Ordinal);
        foreach (var (key, tensor) in hf)
        {
            var m = LayerKey().Match(key);
            if (m.Success)
            {
                string prefix = (m.Groups[1].Value == "vision_model" ? "visual.transformer" : "transformer") + ".resblocks." + m.Groups[2].Value;
                string rest = m.Groups[3].Value;
                int slot = rest switch
                {
                    "self_attn.q_proj.weight" or "self_attn.q_proj.bias" => 0,
                    "self_attn.k_proj.weight" or "self_attn.k_proj.bias" => 1,
                    "self_attn.v_proj.weight" or "self_attn.v_proj.bias" => 2,
                    _ => -1,
                };
                if (slot >= 0)
                {
                    string target = prefix + ".attn.in_proj_" + (rest.EndsWith("weight", StringComparison.Ordinal) ? "weight" : "bias");
                    if (!qkv.TryGetValue(target, out var parts)) qkv[target] = parts = new Tensor?[3];
                    parts[slot] = tensor;
                    continue;
                }
                result[prefix + "." + LayerSuffix(rest)] = tensor.alias();
                continue;
            }
            switch (key)
            {
                case "vision_model.embeddings.position_ids":
                case "text_model.embeddings.position_ids":
                    break;
                case "visual_projection.weight": result["visual.proj"] = tensor.t().contiguous(); break;
                case "text_projection.weight": result["text_projection"] = tensor.t().contiguous(); break;
                default: result[TopLevel(key)] = tensor.alias(); break;
            }
        }
        foreach (var (target, parts) in qkv)
        {
            if (parts.Any(p => p is null))
            {
                // Report the incomplete projection under the name the user can find in the file.
                for (int i = 0; i < 3; i++)
                    if (parts[i] is { } p) result[$"{target} (from {"qkv"[i]}_proj only)"] = p.alias();
                continue;
            }
            result[target] = torch.cat([parts[0]!, parts[1]!, parts[2]!], dim: 0);
        }
        return result;
    }

    private static string LayerSuffix(string rest) => rest switch
    {
        "self_attn.out_proj.weight" => "attn.out_proj.weight",
        "self_attn.out_proj.bias" => "attn.out_proj.bias",
        "layer_norm1.weight" => "ln_1.weight",
        "layer_norm1.bias" => "ln_1.bias",
        "layer_norm2.weight" => "ln_2.weight",
        "layer_norm2.bias" => "ln_2.bias",
        "mlp.fc1.weight" => "mlp.c_fc.weight",
        "mlp.fc1.bias" => "mlp.c_fc.bias",
        "mlp.fc2.weight" => "mlp.c_proj.weight",
        "mlp.fc2.bias" => "mlp.c_proj.bias",
        _ => "hf." + rest,
    };

    private static string TopLevel(string key) => key switch
    {
        "vision_model.embeddings.class_embedding" => "visual.class_embedding",
        "vision_model.embeddings.patch_embedding.weight" => "visual.conv1.weight",
        "vision_model.embeddings.position_embedding.weight" => "visual.positional_embedding",
        "vision_model.pre_layrnorm.weight" => "visual.ln_pre.weight",
        "vision_model.pre_layrnorm.bias" => "visual.ln_pre.bias",
        "vision_model.post_layernorm.weight" => "visual.ln_post.weight",
        "vision_model.post_layernorm.bias" => "visual.ln_post.bias",
        "text_model.embeddings.token_embedding.weight" => "token_embedding.weight",
        "text_model.embeddings.position_embedding.weight" => "positional_embedding",
        "text_model.final_layer_norm.weight" => "ln_final.weight",
        "text_model.final_layer_norm.bias" => "ln_final.bias",
        "logit_scale" => "logit_scale",
        _ => key,
    };
}
