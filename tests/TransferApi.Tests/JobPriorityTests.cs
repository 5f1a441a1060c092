using TransferApi.Options;
using TransferApi.Services;
using static TorchSharp.torch;

namespace TransferApi.Tests;

/// <summary>Job threads yield the cores to predictions: they, and the libtorch threads they start, run at a lower
/// scheduling priority.</summary>
public class JobPriorityTests
{
    [Fact]
    public void A_job_thread_and_the_libtorch_threads_it_starts_run_at_the_configured_nice_value()
    {
        var before = ThreadsAtNice(19);
        var (own, started) = (0, 0);
        var job = new Thread(() =>
        {
            JobThreads.Prepare(new WorkerOptions { TorchThreads = 2, JobNice = 19 });
            // A product large enough for libtorch to start its OpenMP team on this thread.
            using var a = rand(512, 512);
            using var product = a.matmul(a);
            own = Nice("thread-self");
            started = ThreadsAtNice(19).Except(before).Count();
        });
        job.Start();
        job.Join();
        Assert.Equal(19, own);
        // The job thread itself and at least one OpenMP worker (libtorch runs 2 threads: the caller and one more).
        Assert.True(started >= 2, $"{started} thread(s) at nice 19 after the job's first libtorch call");
        // This test's own thread kept its priority.
        Assert.Equal(0, Nice("thread-self"));
    }

    private static int Nice(string task) =>
        int.Parse(
            File.ReadAllText($"/proc/{task}/stat").Split(')')[1].Split(' ', StringSplitOptions.RemoveEmptyEntries)[16]
        );

    private static HashSet<string> ThreadsAtNice(int nice) =>
        Directory
            .GetDirectories("/proc/self/task")
            .Where(task =>
            {
                try
                {
                    return Nice(task["/proc/".Length..]) == nice;
                }
                catch (IOException)
                {
                    return false;
                }
            })
            .ToHashSet();
}
