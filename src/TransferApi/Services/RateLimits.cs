using System.Globalization;
using System.Security.Claims;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.RateLimiting;
using TransferApi.Options;

namespace TransferApi.Services;

public static class RateLimits
{
    public const string Predict = "predict",
        Upload = "upload";

    public static IServiceCollection AddKeyRateLimits(this IServiceCollection services, IConfiguration configuration)
    {
        var limits = configuration.GetSection(RateLimitOptions.Section).Get<RateLimitOptions>()
            ?? new RateLimitOptions();
        return services.AddRateLimiter(o =>
        {
            o.AddPolicy(Predict, context => PerKey(context, Predict, limits.PredictPerMinute));
            o.AddPolicy(Upload, context => PerKey(context, Upload, limits.UploadsPerMinute));
            o.OnRejected = async (rejected, cancellation) =>
            {
                var http = rejected.HttpContext;
                var retryAfter = rejected.Lease.TryGetMetadata(MetadataName.RetryAfter, out var wait)
                    ? Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds))
                    : 1;
                http.Response.StatusCode = StatusCodes.Status429TooManyRequests;
                http.Response.Headers.RetryAfter = retryAfter.ToString(CultureInfo.InvariantCulture);
                await http
                    .RequestServices.GetRequiredService<IProblemDetailsService>()
                    .WriteAsync(
                        new ProblemDetailsContext
                        {
                            HttpContext = http,
                            ProblemDetails =
                            {
                                Status = StatusCodes.Status429TooManyRequests,
                                Title = "Too many requests",
                                Detail =
                                    $"{Caller.Header}: this key has used its "
                                    + $"{PolicyOf(http)} "
                                    + $"allowance for now; retry after {retryAfter} s (see the Retry-After header).",
                            },
                        }
                    );
            };
        });
    }

    /// <summary>One bucket per key (the bootstrap key and development requests share theirs).</summary>
    private static RateLimitPartition<string> PerKey(HttpContext context, string policy, int perMinute) =>
        RateLimitPartition.GetTokenBucketLimiter(
            $"{policy}:{context.User.FindFirstValue(ClaimTypes.NameIdentifier) ?? "anonymous"}",
            _ => new TokenBucketRateLimiterOptions
            {
                TokenLimit = perMinute,
                // Refilled every second, or one token at a time for allowances under one per second.
                TokensPerPeriod = Math.Max(1, perMinute / 60),
                ReplenishmentPeriod =
                    perMinute >= 60 ? TimeSpan.FromSeconds(1) : TimeSpan.FromSeconds(60.0 / perMinute),
                QueueLimit = 0,
                AutoReplenishment = true,
            }
        );

    private static string PolicyOf(HttpContext http) =>
        http.GetEndpoint()?.Metadata.GetMetadata<EnableRateLimitingAttribute>()?.PolicyName ?? "request";
}
