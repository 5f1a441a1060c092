using System.IO.Compression;
using System.Text.Json;
using TransferApi.Persistence;
using TransferApi.Training.Export;
using TransferApi.Training.Training;

namespace TransferApi.Features.Models;

/// <summary>An export download: the network file and model.json, which says what goes in, what comes out and how to load it.</summary>
public static class ModelExportPackage
{
    // A file for people and tools, not HTML: apostrophes stay apostrophes.
    private static readonly JsonSerializerOptions Indented = new(JsonSerializerDefaults.Web) { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static byte[] Zip(TrainedModel model, ModelCheckpoint checkpoint, ExportFormat format, (string FileName, byte[] Bytes) weights)
    {
        var size = checkpoint.Preprocessing.InputSize;
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
                pixels = $"{checkpoint.Preprocessing.ChannelOrder} planes, values 0..255 as float32 (the per-pixel mean image is subtracted inside the network)",
                resize = $"{checkpoint.Preprocessing.Resize}: scale the shorter side to {size} (bicubic), then cut the centre {size}x{size}",
            },
            output = new { name = OnnxExport.OutputName, shape = new object[] { "N", checkpoint.Labels.Count }, meaning = "class probabilities in the order of labels" },
            network = $"backbone {checkpoint.BackboneId}: ResNet with basic blocks [2,2,2,3] (torchvision layer names; not torchvision's [2,2,2,2]), "
                + $"{checkpoint.FineTunedStages} fine-tuned stage(s); head {checkpoint.Head.Kind}{(checkpoint.Head.Kind == HeadKind.Mlp ? $" ({checkpoint.Head.HiddenUnits} hidden units, ReLU)" : "")}; softmax",
            load = format switch
            {
                ExportFormat.Onnx => "onnxruntime.InferenceSession('model.onnx').run(['probabilities'], {'pixels': batch})",
                ExportFormat.PyTorch => "state = torch.load('model.pt'): a state dict with mean_image, backbone.* and head.*, for a module of the same structure",
                _ => "TorchSharp: Module.load('model.dat') on a module with the state-dict keys mean_image, backbone.*, head.* (TransferApi's ExportedClassifier)",
            },
        };
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            using (var entry = zip.CreateEntry(weights.FileName, CompressionLevel.Fastest).Open()) entry.Write(weights.Bytes);
            using (var entry = zip.CreateEntry("model.json", CompressionLevel.Fastest).Open()) JsonSerializer.Serialize(entry, manifest, Indented);
        }
        return buffer.ToArray();
    }
}
