namespace Defeat.Samples.Clip;

/// <summary>The requested device is not present (for example <c>--device cuda</c> without a usable GPU).</summary>
/// <param name="message">What was asked for, what was found and what to do.</param>
public sealed class DeviceUnavailableException(string message) : Exception(message);
