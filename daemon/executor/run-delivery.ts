/**
 * The last two steps of a run on a node, `deliver` and `clean`, each safe to repeat after a crash at
 * any point (DESIGN §1, "derive, don't remember"):
 *
 * deliver (journal `uploading`): the ended container and its outputs volume are removed (the end is
 * journaled, so nothing is lost), then the outputs, `_secd/run.json` and both logs go where they go
 * (a results branch, or a folder for `secd run`). Exactly once: each results commit is journaled
 * before it is pushed, and a branch already on the remote counts as delivered only at one of those —
 * checked first, with or without the run's checkout (a checkout that is gone is made again only when
 * the branch is not there). The outcome is journaled (`delivered`) before anything is deleted. A
 * delivery that fails deletes nothing: the journal says `undelivered` and the run's folder is kept.
 *
 * clean (journal `delivered`): the checkout, outputs and logs are removed; the journal stays until
 * the leader has the result (the node agent removes the folder), so a node killed meanwhile reports
 * the journaled outcome and never runs the run again.
 *
 * The disclosure checks (DESIGN §10) ran on every file as /outputs was read back; the logs are
 * checked here; what they flag goes into run.json and the outcome, whatever the run's policy.
 */
import { readFile, rm, rmdir } from 'node:fs/promises';
import { failpoint } from '../../scheduler/common/failpoints.js';
import { outputsVolumeName } from './container-profile.js';
import { checkoutCommit, hasCommit } from './git-checkout.js';
import { runContainerName } from './run-build.js';
import { disclosureChecksOf } from './run-collection.js';
import { buildLogTailFor, carriesBuildLogTail } from './build-log-tail.js';
import type { RunContext } from './run-context.js';
import { saveJournal, type RunJournal } from './run-workspace.js';
import { DisclosureScanner } from '../results/disclosure-scan.js';
import { findOwnResultsBranch, pushResultsBranch, writeLocalResults, type ResultsBranchResult } from '../results/results-branch.js';
import type { RunOutcome, RunReport } from '../../scheduler/contract/run-spec.js';

export { collectDeadlineMs, CANCELLED_COLLECT_MS, DEFAULT_DISK_WATERMARK_BYTES, formatHours, type RunBoundsSettings } from './run-collection.js';

/** What deliver did: the journal of a delivered run (clean comes next), or the final outcome of one that was not. */
export type Delivered = { journal: RunJournal; outcome?: undefined } | { outcome: RunOutcome; journal?: undefined };

/** Step `deliver`, see the header. */
export async function deliverRun(ctx: RunContext, journal: RunJournal): Promise<Delivered> {
  const { spec, deps, ws, opts, log } = ctx;
  const { settings, engine } = deps;
  const ended = journal.ended!;
  journal = { ...journal };
  failpoint('node.deliver.begin');
  // The end is journaled: the container and its volume have nothing more to give (one kept for
  // debugging keeps its volume too: removal then says false).
  // A container the engine will not remove now costs no delivery: it is logged, and found again by its label.
  const removeContainer = (id: string) => engine.removeContainer(id).catch((err: unknown) => log.warn({ err, container: id }, 'could not remove the run container'));
  if (journal.containerId) await removeContainer(journal.containerId);
  await removeContainer(runContainerName(spec.runId));
  failpoint('node.deliver.container-removed');
  await engine.removeVolume(outputsVolumeName(spec.runId)).catch((err: unknown) => log.warn({ err }, 'could not remove the outputs volume'));
  failpoint('node.deliver.volume-removed');

  opts.onPhase('uploading', deps.now().toISOString());
  const finishedAt = deps.now().toISOString();
  const buildLog = await readFile(ws.buildLog).catch(() => Buffer.alloc(0));
  const runLog = await readFile(ws.runLog).catch(() => Buffer.alloc(0));
  // Logs are outputs like any other file (DESIGN §10): checked as they are delivered, after the outputs.
  const scanner = new DisclosureScanner(disclosureChecksOf(spec));
  scanner.add(journal.outputsDisclosure ?? []);
  scanner.scanBuffer('_secd/build.log', buildLog);
  scanner.scanBuffer('_secd/run.log', runLog);
  const disclosure = scanner.findings();
  // A direct run's failed build: its last build.log lines go with the result, for the run page.
  const tail = carriesBuildLogTail(spec, ended, journal.imageId) ? { buildLogTail: buildLogTailFor(spec, buildLog) } : {};
  const after = journal.after as { report: Partial<RunReport>; bytes: RunOutcome['datasetBytes'] } | undefined;
  const { end, exitCode, startedAt } = ended;
  const report: Omit<RunReport, 'outputs'> = {
    run_id: spec.runId,
    project: spec.project,
    commit: spec.commit,
    user: spec.user,
    signer_fingerprint: spec.signer,
    node: settings.nodeId,
    gpus: spec.gpus,
    image_id: journal.imageId,
    state: end,
    reason: ended.reason,
    exit_code: exitCode,
    created_at: spec.createdAt,
    build_started_at: journal.buildStartedAt,
    started_at: startedAt,
    finished_at: finishedAt,
    timings_ms: { build: journal.buildMs, run: ended.runMs },
    runfor_ms: spec.runforMs,
    warnings: spec.warnings,
    ...after?.report,
    release: spec.release?.policy ?? 'direct',
    disclosure,
  };
  const caps = { maxFileBytes: settings.maxOutputFileBytes, maxTotalBytes: settings.maxOutputTotalBytes };
  const delivery = { runId: spec.runId, stamp: journal.stamp, outputsDir: ws.outputs, leftOut: journal.outputsLeftOut ?? [], report, buildLog, runLog, caps };
  const outcome = (branch: string | null, outputsPath: string | null, resultsCommit: string | null): RunOutcome => ({
    end,
    reason: end === 'succeeded' && branch ? `succeeded; results on branch ${branch}` : ended.reason,
    exitCode,
    imageId: journal.imageId,
    branch,
    outputsPath,
    startedAt,
    finishedAt,
    ...(after?.bytes ? { datasetBytes: after.bytes } : {}),
    ...(resultsCommit ? { resultsCommit } : {}),
    disclosure,
    ...tail,
  });
  // The outcome of a run whose results did not get where they go: failed, with why.
  const undelivered = (why: string): RunOutcome => ({ end: 'failed', reason: why, exitCode, imageId: journal.imageId, branch: null, outputsPath: null, startedAt, finishedAt, disclosure, ...tail });

  let done: RunOutcome;
  if (opts.local) {
    const local = await writeLocalResults({ ...delivery, destRoot: opts.local.resultsRoot });
    if (!local.ok) return { outcome: undelivered(`results could not be written: ${local.reason}`) };
    done = outcome(null, local.folder, null);
  } else if (spec.resultsRemote) {
    const pushed = await pushOnce(ctx, journal, delivery);
    if (!pushed.ok) {
      // Nothing of the run is deleted: its outputs stay on the node (work_dir/kept/ once the leader has the result).
      await saveJournal(ws, { ...journal, undelivered: pushed.reason }).catch((err: unknown) => log.warn({ err }, 'could not journal the failed delivery'));
      log.error({ reason: pushed.reason, code: pushed.code }, 'results could not be pushed; workspace kept');
      const had = end === 'succeeded' ? 'succeeded' : `ended: ${ended.reason}`;
      return { outcome: undelivered(`results could not be pushed (${pushed.reason}); they are kept on node ${settings.nodeId}; the run had ${had}`) };
    }
    failpoint('node.deliver.pushed');
    done = outcome(pushed.branch, pushed.path, pushed.commit);
  } else {
    done = outcome(null, null, null);
  }
  // Before anything is deleted: from here a restarted node only cleans up and reports this.
  const delivered: RunJournal = { ...journal, phase: 'delivered', outcome: done };
  try {
    await saveJournal(ws, delivered);
  } catch (err) {
    // Delivered all the same: the files stay, and a restart finds the branch at its journaled commit.
    log.error({ err }, 'could not journal the delivery; the run folder is left as it is');
    return { outcome: done };
  }
  failpoint('node.deliver.journaled');
  return { journal: delivered };
}

/** Step `clean`, see the header: the folder's files go, the journaled outcome is the run's. */
export async function cleanRun(ctx: RunContext, journal: RunJournal): Promise<RunOutcome> {
  const { ws, opts } = ctx;
  failpoint('node.clean.begin');
  const files: Array<[string, string]> = [
    [ws.src, 'src'],
    [ws.outputs, 'outputs'],
    [ws.buildLog, 'build-log'],
    [ws.runLog, 'run-log'],
  ];
  // The run is delivered: a file that will not go is the operator's to remove, never the run's failure.
  const warn = (err: unknown) => ctx.log.warn({ err }, 'could not remove a file of a delivered run');
  for (const [path, name] of files) {
    await rm(path, { recursive: true, force: true }).catch(warn);
    failpoint(`node.clean.${name}-removed`);
  }
  if (opts.local) {
    // `secd run` has no agent to report to: nothing of the run stays on disk.
    await rm(ws.journal, { force: true }).catch(warn);
    await rmdir(ws.dir).catch(() => undefined);
  }
  return journal.outcome!;
}

// The push, exactly once: a branch already at a journaled commit is delivered; otherwise the
// checkout (made again when it is gone) gets the results commit, journaled, then pushed.
async function pushOnce(ctx: RunContext, journal: RunJournal, delivery: Omit<Parameters<typeof pushResultsBranch>[0], 'repoDir' | 'remoteUrl'>): Promise<ResultsBranchResult> {
  const { spec, ws } = ctx;
  const remoteUrl = spec.resultsRemote!;
  const ownCommits = [...(journal.resultsCommits ?? [])];
  const there = await findOwnResultsBranch({ runId: spec.runId, stamp: journal.stamp, remoteUrl, ownCommits, cwd: ws.dir });
  if (!there.ok) return there;
  if (there.found) {
    ctx.log.info({ branch: there.found.branch, commit: there.found.commit }, 'the results branch is already on the remote at the commit journaled for it');
    return { ok: true, ...there.found, manifest: { files: 0, bytes: 0, leftOut: [] } };
  }
  if (!(await hasCommit(ws.src, spec.commit))) {
    ctx.log.info({}, 'the checkout is gone: checking the commit out again to deliver');
    await rm(ws.src, { recursive: true, force: true });
    try {
      await checkoutCommit(spec.source, spec.commit, ws.src);
    } catch (err) {
      return { ok: false, code: 'bad_commit', reason: err instanceof Error ? err.message : String(err) };
    }
    failpoint('node.deliver.checked-out');
  }
  return pushResultsBranch({
    ...delivery,
    repoDir: ws.src,
    remoteUrl,
    ownCommits,
    // Journaled before the push: after a crash, a branch at this commit is this run's own push.
    recordCommit: async (commit) => {
      // On the journal deliver goes on with: a failed push keeps it, a delivered one carries it.
      journal.resultsCommits = [...ownCommits, commit];
      await saveJournal(ws, journal);
      failpoint('node.deliver.commit-recorded');
    },
  });
}
