using System.ComponentModel.DataAnnotations;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Configuration;
using TransferApi.Options;
using TransferApi.Services;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.Serialization;

namespace TransferApi.Tests;

/// <summary>
/// deploy/transferapi.yaml and docker-compose.yml hold together: they parse, every reference inside them resolves
/// (config maps, secrets, labels, ports, scale targets), every setting they pass is one the service reads and
/// accepts, and grace periods leave room for a graceful shutdown. Nothing here needs a cluster or Docker.
/// </summary>
public class DeploymentManifestTests
{
    private static readonly string Root = TestData.RepositoryRoot;

    private static readonly Dictionary<string, string> ApiVersions = new()
    {
        ["ConfigMap"] = "v1",
        ["Service"] = "v1",
        ["Job"] = "batch/v1",
        ["Deployment"] = "apps/v1",
        ["HorizontalPodAutoscaler"] = "autoscaling/v2",
        ["PodDisruptionBudget"] = "policy/v1",
    };

    private static readonly Dictionary<string, Type> OptionSections = new(StringComparer.OrdinalIgnoreCase)
    {
        [ServiceOptions.Section] = typeof(ServiceOptions),
        [WorkerOptions.Section] = typeof(WorkerOptions),
        [UploadOptions.Section] = typeof(UploadOptions),
        [DatasetOptions.Section] = typeof(DatasetOptions),
        [ServingOptions.Section] = typeof(ServingOptions),
        [AuthOptions.Section] = typeof(AuthOptions),
        [RateLimitOptions.Section] = typeof(RateLimitOptions),
        [IdempotencyOptions.Section] = typeof(IdempotencyOptions),
        [WebhookOptions.Section] = typeof(WebhookOptions),
        [SecretsOptions.Section] = typeof(SecretsOptions),
    };

    [Fact]
    public void Kubernetes_manifests_parse_and_every_reference_resolves()
    {
        var path = Path.Combine(Root, "deploy", "transferapi.yaml");
        var documents = ReadDocuments(path);
        foreach (var doc in documents)
        {
            var kind = doc["kind"]!.GetValue<string>();
            Assert.True(ApiVersions.TryGetValue(kind, out var apiVersion), $"unexpected kind {kind}");
            Assert.Equal(apiVersion, doc["apiVersion"]!.GetValue<string>());
            Assert.False(string.IsNullOrEmpty(doc["metadata"]?["name"]?.GetValue<string>()), $"a {kind} has no name");
        }
        JsonObject Named(string kind, string name) =>
            documents.SingleOrDefault(d =>
                d["kind"]!.GetValue<string>() == kind && d["metadata"]!["name"]!.GetValue<string>() == name
            ) ?? throw new Xunit.Sdk.XunitException($"{kind} '{name}' is referenced but not defined in {path}");
        var deployments = documents.Where(d => d["kind"]!.GetValue<string>() == "Deployment").ToList();
        Assert.Equal(["transferapi-api", "transferapi-worker"], deployments.Select(Name).Order());

        // Secrets are created by hand; the header says how, with which keys.
        var header = File.ReadAllText(path);
        // Each secret's keys: the --from-literal options of its command, which may continue over several lines.
        var documentedSecrets = header
            .Split("create secret generic ")
            .Skip(1)
            .ToDictionary(
                command => command.Split(' ')[0],
                command =>
                    Regex
                        .Matches(CommandText(command), @"--from-literal=([\w-]+)=")
                        .Select(m => m.Groups[1].Value)
                        .ToHashSet()
            );
        static string CommandText(string command)
        {
            var lines = command.Split('\n');
            var text = new StringBuilder(lines[0]);
            for (var i = 0; i + 1 < lines.Length && lines[i].TrimEnd().EndsWith('\\'); i++)
                text.Append(' ').Append(lines[i + 1]);
            return text.ToString();
        }
        Assert.Equal(["transferapi-auth", "transferapi-db"], documentedSecrets.Keys.Order());

        var images = new HashSet<string>();
        foreach (
            var (workload, pod) in documents
                .Where(d => d["kind"]!.GetValue<string>() is "Deployment" or "Job")
                .Select(d => (Name(d), d["spec"]!["template"]!))
        )
        {
            var labels = Labels(pod["metadata"]?["labels"]);
            Assert.Equal("true", pod["spec"]!["securityContext"]?["runAsNonRoot"]?.ToString());
            var settings = new Dictionary<string, string>();
            foreach (var container in pod["spec"]!["containers"]!.AsArray().Select(c => c!))
            {
                images.Add(container["image"]!.GetValue<string>());
                foreach (var source in container["envFrom"]?.AsArray() ?? [])
                {
                    var configMap = source!["configMapRef"]!["name"]!.GetValue<string>();
                    foreach (var (key, value) in Named("ConfigMap", configMap)["data"]!.AsObject())
                        settings[key] = value!.GetValue<string>();
                }
                foreach (var env in container["env"]?.AsArray() ?? [])
                {
                    var name = env!["name"]!.GetValue<string>();
                    if (env["valueFrom"]?["secretKeyRef"] is { } secret)
                    {
                        var secretName = secret["name"]!.GetValue<string>();
                        Assert.True(
                            documentedSecrets.TryGetValue(secretName, out var keys),
                            $"{workload}: secret '{secretName}' is not in the header's instructions"
                        );
                        Assert.Contains(secret["key"]!.GetValue<string>(), keys);
                        settings[name] = "from-secret";
                    }
                    else
                    {
                        settings[name] = env["value"]!.GetValue<string>();
                    }
                }
                var ports = (container["ports"]?.AsArray() ?? [])
                    .Select(p => p!["name"]?.GetValue<string>())
                    .ToHashSet();
                foreach (
                    var probe in new[] { "startupProbe", "readinessProbe", "livenessProbe" }
                        .Select(p => container[p])
                        .OfType<JsonNode>()
                )
                {
                    var port = probe["httpGet"]!["port"]!.GetValue<string>();
                    Assert.True(
                        ports.Contains(port),
                        $"{workload}: a probe uses port '{port}', which the container does not name"
                    );
                    Assert.StartsWith("/health/", probe["httpGet"]!["path"]!.GetValue<string>());
                }
                var resources = container["resources"]!;
                Assert.True(
                    Quantity(resources["requests"]!["memory"]!) <= Quantity(resources["limits"]!["memory"]!),
                    $"{workload}: memory request above its limit"
                );
                if (resources["limits"]!["cpu"] is { } cpuLimit)
                    Assert.True(Quantity(resources["requests"]!["cpu"]!) <= Quantity(cpuLimit));
            }
            Assert.True(settings.ContainsKey("ConnectionStrings__Postgres"), $"{workload} has no database");
            Assert.True(
                settings.ContainsKey("Auth__BootstrapAdminKey"),
                $"{workload} has no bootstrap key: outside Development the service refuses to start without one"
            );
            Assert.True(
                settings.ContainsKey("Secrets__KeyEncryptionKey"),
                $"{workload} has no key-encryption key: outside Development the service refuses to start without one"
            );
            AssertServiceAccepts(workload, settings);

            var deployment = deployments.SingleOrDefault(d => Name(d) == workload);
            if (deployment is null)
            {
                Assert.Equal(
                    ["migrate"],
                    pod["spec"]!["containers"]![0]!["args"]!.AsArray().Select(a => a!.GetValue<string>())
                );
                continue;
            }
            Assert.True(
                Labels(deployment["spec"]!["selector"]!["matchLabels"]).All(l => labels.Contains(l)),
                $"{workload}: its selector does not match its pods"
            );
            // SIGTERM: the grace period covers preStop, then the service's own shutdown timeout.
            var shutdown = TimeSpan.Parse(
                settings["Service__ShutdownTimeout"],
                System.Globalization.CultureInfo.InvariantCulture
            );
            var preStop = pod["spec"]!["containers"]![0]!
                ["lifecycle"]
                ?["preStop"]?["sleep"]?["seconds"]?.GetValue<string>()
                is { } sleep
                ? int.Parse(sleep, System.Globalization.CultureInfo.InvariantCulture)
                : 0;
            var grace = int.Parse(
                pod["spec"]!["terminationGracePeriodSeconds"]!.GetValue<string>(),
                System.Globalization.CultureInfo.InvariantCulture
            );
            Assert.True(
                grace > preStop + shutdown.TotalSeconds,
                $"{workload}: {grace} s of grace is not more than {preStop} s preStop + {shutdown.TotalSeconds} s "
                    + "shutdown"
            );
        }
        Assert.Single(images);

        foreach (var service in documents.Where(d => d["kind"]!.GetValue<string>() == "Service"))
        {
            var selector = Labels(service["spec"]!["selector"]);
            var targets = deployments
                .Where(d => selector.All(l => Labels(d["spec"]!["template"]!["metadata"]!["labels"]).Contains(l)))
                .ToList();
            Assert.True(targets.Count > 0, $"Service {Name(service)} selects no pods");
            foreach (var port in service["spec"]!["ports"]!.AsArray())
                Assert.All(targets, t =>
                    Assert.Contains(
                        port!["targetPort"]!.GetValue<string>(),
                        t["spec"]!["template"]!["spec"]!["containers"]![0]!["ports"]!
                            .AsArray()
                            .Select(p => p!["name"]!.GetValue<string>())
                    )
                );
        }
        foreach (var budget in documents.Where(d => d["kind"]!.GetValue<string>() == "PodDisruptionBudget"))
            Assert.Contains(deployments, d =>
                Labels(budget["spec"]!["selector"]!["matchLabels"])
                    .All(l => Labels(d["spec"]!["template"]!["metadata"]!["labels"]).Contains(l))
            );
        var autoscaler = documents.Single(d => d["kind"]!.GetValue<string>() == "HorizontalPodAutoscaler");
        Assert.Equal("Deployment", autoscaler["spec"]!["scaleTargetRef"]!["kind"]!.GetValue<string>());
        Named("Deployment", autoscaler["spec"]!["scaleTargetRef"]!["name"]!.GetValue<string>());
        Assert.Equal("transferapi-worker", autoscaler["spec"]!["scaleTargetRef"]!["name"]!.GetValue<string>());
        Assert.True(
            int.Parse(
                autoscaler["spec"]!["minReplicas"]!.GetValue<string>(),
                System.Globalization.CultureInfo.InvariantCulture
            )
                < int.Parse(
                    autoscaler["spec"]!["maxReplicas"]!.GetValue<string>(),
                    System.Globalization.CultureInfo.InvariantCulture
                )
        );
    }

    [Fact]
    public void Compose_migrates_once_before_api_and_scalable_workers_with_health_checks_and_room_to_stop()
    {
        var compose = ReadDocuments(Path.Combine(Root, "docker-compose.yml")).Single();
        var services = compose["services"]!.AsObject();
        Assert.Equal(["api", "migrate", "postgres", "worker"], services.Select(s => s.Key).Order());
        Assert.Contains(
            "pgdata:",
            services["postgres"]!["volumes"]!.AsArray().Select(v => v!.GetValue<string>()).Single()
        );
        Assert.Equal(["migrate"], services["migrate"]!["command"]!.AsArray().Select(a => a!.GetValue<string>()));

        foreach (var role in new[] { "api", "worker" })
        {
            var service = services[role]!;
            Assert.Equal(
                "service_completed_successfully",
                service["depends_on"]!["migrate"]!["condition"]!.GetValue<string>()
            );
            Assert.Contains("/health/ready", service["healthcheck"]!["test"]!.ToJsonString());
            var environment = service["environment"]!
                .AsObject()
                .ToDictionary(p => p.Key, p => p.Value!.GetValue<string>());
            Assert.Equal(role == "api" ? "Api" : "Worker", environment["Service__Roles"]);
            AssertServiceAccepts(
                role,
                environment.ToDictionary(
                    e => e.Key,
                    e => e.Value.StartsWith("${", StringComparison.Ordinal) ? "from-environment" : e.Value
                )
            );
            var shutdown = environment.TryGetValue("Service__ShutdownTimeout", out var configured)
                ? TimeSpan.Parse(configured, System.Globalization.CultureInfo.InvariantCulture)
                : new ServiceOptions().ShutdownTimeout;
            var grace = TimeSpan.FromSeconds(
                int.Parse(
                    service["stop_grace_period"]!.GetValue<string>().TrimEnd('s'),
                    System.Globalization.CultureInfo.InvariantCulture
                )
            );
            Assert.True(
                grace > shutdown,
                $"{role}: stop_grace_period {grace} does not exceed the shutdown timeout {shutdown}"
            );
        }
        // `docker compose up --scale worker=3` needs workers without fixed host ports or names.
        Assert.Null(services["worker"]!["ports"]);
        Assert.Null(services["worker"]!["container_name"]);
        Assert.Equal("8080:8080", services["api"]!["ports"]!.AsArray().Single()!.GetValue<string>());
    }

    /// <summary>Every setting is one the service reads (a property of its options), and its value binds and
    /// validates.</summary>
    private static void AssertServiceAccepts(string where, Dictionary<string, string> settings)
    {
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(
                settings.Select(s => new KeyValuePair<string, string?>(
                    s.Key.Replace("__", ":", StringComparison.Ordinal),
                    s.Value
                ))
            )
            .Build();
        foreach (var key in settings.Keys)
        {
            var parts = key.Split("__");
            if (parts[0] is "ConnectionStrings" or "Logging" || key.StartsWith("ASPNETCORE_", StringComparison.Ordinal))
                continue;
            Assert.True(
                OptionSections.TryGetValue(parts[0], out var type),
                $"{where}: '{key}' is not a section the service reads"
            );
            Assert.True(
                parts.Length == 2
                    && type.GetProperty(
                        parts[1],
                        System.Reflection.BindingFlags.Public
                            | System.Reflection.BindingFlags.Instance
                            | System.Reflection.BindingFlags.IgnoreCase
                    )
                        is not null,
                $"{where}: '{key}' is not a setting of {type.Name}"
            );
        }
        foreach (var (section, type) in OptionSections)
        {
            var options = configuration.GetSection(section).Get(type, o => o.ErrorOnUnknownConfiguration = true)
                ?? Activator.CreateInstance(type)!;
            var problems = new List<ValidationResult>();
            Assert.True(
                Validator.TryValidateObject(
                    options,
                    new ValidationContext(options),
                    problems,
                    validateAllProperties: true
                ),
                $"{where}: {string.Join("; ", problems.Select(p => p.ErrorMessage))}"
            );
        }
    }

    private static string Name(JsonNode document) => document["metadata"]!["name"]!.GetValue<string>();

    private static HashSet<string> Labels(JsonNode? labels) =>
        labels?.AsObject().Select(l => $"{l.Key}={l.Value!.GetValue<string>()}").ToHashSet() ?? [];

    /// <summary>A Kubernetes quantity in base units: "250m" CPU, "2", "3Gi", "512Mi".</summary>
    private static double Quantity(JsonNode node)
    {
        var text = node.GetValue<string>();
        var match = Regex.Match(text, @"^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti)?$");
        Assert.True(match.Success, $"'{text}' is not a quantity");
        var scale = match.Groups[2].Value switch
        {
            "m" => 1e-3,
            "Ki" => 1024.0,
            "Mi" => 1024.0 * 1024,
            "Gi" => 1024.0 * 1024 * 1024,
            "Ti" => 1024.0 * 1024 * 1024 * 1024,
            _ => 1,
        };
        return double.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) * scale;
    }

    /// <summary>Each YAML document of a file as JSON (anchors and merge keys resolved; scalars stay strings).</summary>
    private static List<JsonObject> ReadDocuments(string path)
    {
        using var reader = new StreamReader(path);
        var parser = new MergingParser(new Parser(reader));
        var deserializer = new DeserializerBuilder().Build();
        var documents = new List<JsonObject>();
        parser.Consume<StreamStart>();
        while (parser.Accept<DocumentStart>(out _))
        {
            if (ToJson(deserializer.Deserialize<object>(parser)) is JsonObject document)
                documents.Add(document);
        }
        Assert.NotEmpty(documents);
        return documents;
    }

    private static JsonNode? ToJson(object? value) =>
        value switch
        {
            Dictionary<object, object?> map => new JsonObject(
                map.Select(p => KeyValuePair.Create(p.Key.ToString()!, ToJson(p.Value)))
            ),
            List<object?> list => new JsonArray(list.Select(ToJson).ToArray()),
            null => null,
            _ => JsonValue.Create(value.ToString()),
        };
}
