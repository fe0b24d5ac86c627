"""The script a researcher writes by hand: N chat completions through the
`openai` package's async client with C in flight, against the same load
server as tw (bench/llm_load.sh). Prints one JSON line: completions, wall
seconds, rate, CPU seconds per completion, peak RSS."""
import asyncio
import json
import resource
import sys
import time

from openai import AsyncOpenAI


async def main(base_url: str, n: int, concurrency: int) -> None:
    client = AsyncOpenAI(base_url=base_url, api_key="none", max_retries=2, timeout=600)
    gate = asyncio.Semaphore(concurrency)
    done = 0

    async def one(i: int) -> None:
        nonlocal done
        async with gate:
            r = await client.chat.completions.create(
                model="load",
                messages=[{"role": "user", "content": f"Write def f_{i % 164}(x): sample {i}"}],
                max_tokens=256,
                temperature=0.8,
                seed=i,
            )
            if r.choices[0].message.content:
                done += 1

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    print(json.dumps({
        "client": "python-openai",
        "completions": done,
        "concurrency": concurrency,
        "wall_s": round(wall, 3),
        "rate_per_s": round(done / wall, 1),
        "cpu_ms_per_completion": round(1000 * cpu / max(done, 1), 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
