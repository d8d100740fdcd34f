using static TorchSharp.torch;

namespace Defeat.Backbones;

/// <summary>
/// The image side of a vision-language backbone, as DEFEAT sees it.
/// </summary>
/// <remarks>
/// Images enter in pixel space: <c>[B, C, H, W]</c> floats in [0, 1]. Any normalisation (CLIP's
/// mean and standard deviation) happens inside the encoder, so that an attack's epsilon-ball
/// is measured in pixels.
/// </remarks>
public interface IImageEncoder
{
    /// <summary>Width <c>D</c> of the class and grid features.</summary>
    int FeatureDim { get; }

    /// <summary>Side of the square input images the encoder expects, in pixels.</summary>
    int ImageSize { get; }

    /// <summary>Number of input channels (3 for RGB).</summary>
    int InputChannels { get; }

    /// <summary>Rows and columns of the patch grid; <c>N = GridHeight * GridWidth</c>.</summary>
    (int Height, int Width) GridSize { get; }

    /// <summary>Encodes a batch of images into the class feature and the grid features.</summary>
    /// <param name="images">Pixels <c>[B, C, H, W]</c> in [0, 1].</param>
    ImageFeatures EncodeImage(Tensor images);
}
