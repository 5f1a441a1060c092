using Hangfire.Dashboard;
using Microsoft.AspNetCore.Authentication;
using TransferApi.Services;

namespace TransferApi.Hosting;

/// <summary>Lets only requests with an admin X-Api-Key into the Hangfire dashboard.</summary>
internal sealed class AdminKeyDashboardFilter : IDashboardAsyncAuthorizationFilter
{
    public async Task<bool> AuthorizeAsync(DashboardContext context)
    {
        var result = await context.GetHttpContext().AuthenticateAsync(Caller.Scheme);
        return result.Succeeded && result.Principal.IsInRole(Caller.Admin);
    }
}
