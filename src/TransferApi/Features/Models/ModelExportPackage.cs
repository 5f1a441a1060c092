using System.IO.Compression;
using System.Text.Json;
using TransferApi.Persistence;
using TransferApi.Training;
using TransferApi.Training.Backbones;
using TransferApi.Training.Checkpoints;
using TransferApi.Training.Export;
using TransferApi.Training.Imaging;

namespace TransferApi.Features.Models;

/// <summary>An export download: the network file and model.json, which says what goes in, what comes out and how to
/// load it.</summary>
public static class ModelExportPackage
{
    // A file for people and tools, not HTML: apostrophes stay apostrophes.
    private static readonly JsonSerializerOptions Indented = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static byte[] Zip(
        TrainedModel model,
        ModelCheckpoint checkpoint,
        BackboneArchitecture architecture,
        ExportFormat format,
        (string FileName, byte[] Bytes) weights
    )
    {
        var spec = checkpoint.Preprocessing;
        var size = spec.InputSize;
        var resize =
            spec.Resize == PreprocessingSpec.ResizeThenCrop
                ? $"scale the shorter side to {spec.ResizeTo} (bilinear, antialiased), then cut the centre "
                    + $"{size}x{size}"
                : $"scale the shorter side to {size} (bicubic), then cut the centre {size}x{size}";
        var normalization =
            spec.Mean == PreprocessingSpec.PerPixelMean
                ? "the per-pixel mean image is subtracted inside the network"
                : "inside the "
                    + "network: "
                    + "(pixel x "
                    + $"{spec.Scale:G6} - mean) / std per channel, mean [{string.Join(", ", spec.ChannelMean!)}], "
                    + $"std [{string.Join(", ", spec.ChannelStd!)}] (R, G, B)";
        var hidden = checkpoint.Head.Kind == HeadKind.Mlp ? $" ({checkpoint.Head.HiddenUnits} hidden units, ReLU)" : "";
        var manifest = new
        {
            modelId = model.Id,
            name = model.Name,
            version = model.Version,
            format = format.ToString().ToLowerInvariant(),
            file = weights.FileName,
            labels = checkpoint.Labels,
            input = new
            {
                name = OnnxExport.InputName,
                shape = new object[] { "N", 3, size, size },
                pixels = $"{spec.ChannelOrder} planes, values 0..255 as float32 ({normalization})",
                resize = $"{spec.Resize}: {resize}",
                preprocessing = spec,
            },
            output = new
            {
                name = OnnxExport.OutputName,
                shape = new object[] { "N", checkpoint.Labels.Count },
                meaning = "class probabilities in the order of labels",
            },
            temperature = checkpoint.Temperature,
            network = $"backbone {checkpoint.BackboneId}: {architecture.Description}; "
                + $"{checkpoint.FineTunedStages} fine-tuned stage(s); head {checkpoint.Head.Kind}{hidden}; "
                + $"softmax(logits / {checkpoint.Temperature:R}) (calibrated)",
            load = format switch
            {
                ExportFormat.Onnx =>
                    "onnxruntime.InferenceSession('model.onnx').run(['probabilities'], {'pixels': batch})",
                ExportFormat.PyTorch =>
                    "state = torch.load('model.pt'): a state dict with input_offset, input_multiplier, "
                        + "inverse_temperature, backbone.* and head.*, for a module of the same structure",
                _ => "TorchSharp: Module.load('model.dat') on a module with the state-dict keys input_offset, "
                    + "input_multiplier, inverse_temperature, backbone.*, head.* (TransferApi's ExportedClassifier)",
            },
        };
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            using (var entry = zip.CreateEntry(weights.FileName, CompressionLevel.Fastest).Open())
                entry.Write(weights.Bytes);
            using (var entry = zip.CreateEntry("model.json", CompressionLevel.Fastest).Open())
                JsonSerializer.Serialize(entry, manifest, Indented);
        }
        return buffer.ToArray();
    }
}
