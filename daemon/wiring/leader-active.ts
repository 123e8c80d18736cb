/**
 * What only the active leader does (DESIGN §11), started once when this process becomes active: drop
 * dataset accounts a previous leader left, carry on every unfinished run from the database
 * (lifecycle.resume), take nodes, look for missed pushes, end runs of lost nodes, poll held reviews,
 * and — where other leaders share the state — pick up the pushes they stored.
 *
 * A standby starts none of it; a leader that loses the lease never goes back (leader-role.ts), so
 * nothing here is ever stopped except at shutdown.
 */
import { errorText } from '../../scheduler/common/errors.js';
import type { Log } from '../../scheduler/common/log.js';
import type { NodeRegistry } from '../../scheduler/cluster/node-registry.js';
import type { RunLifecycle } from '../../scheduler/lifecycle/run-lifecycle.js';
import type { RunDatasets } from '../../scheduler/policy/dataset-access.js';
import { startMissedPushReconciler } from '../../scheduler/reconcile/reconciler.js';
import type { GitLabApi } from '../../scheduler/gitlab/gitlab-port.js';
import type { RunHeads } from '../../storage/run-heads.js';
import type { LocalNode } from '../node/local-node.js';

/** What the active duties are built from. */
export interface ActiveDutiesDeps {
  lifecycle: RunLifecycle;
  registry: NodeRegistry;
  datasets: RunDatasets;
  localNode: LocalNode | null;
  gitlab: GitLabApi;
  runHeads: RunHeads;
  intake: { webhookSecret: string; runBranch: string; reviewProject: string } | null;
  log: Log;
  settings: {
    reconcileIntervalMs: number;
    lostAfterMs: number;
    releasePollIntervalMs: number;
    /** How often pushes other leaders stored are looked for; null with one leader (SQLite). */
    intakePollMs: number | null;
  };
}

/** The started duties; `close` stops them (shutdown). */
export interface ActiveDuties {
  close(): Promise<void>;
}

/** Start every duty of the active leader. */
export async function startActiveDuties(d: ActiveDutiesDeps): Promise<ActiveDuties> {
  const { lifecycle, datasets, log } = d;
  const timers: NodeJS.Timeout[] = [];
  const every = (ms: number, fn: () => void) => {
    const t = setInterval(fn, ms);
    t.unref();
    timers.push(t);
  };
  // Temporary dataset accounts of runs that are not in flight are leftovers of a previous leader.
  await datasets.dropLeftovers().catch((err: unknown) => log.warn({ err: errorText(err) }, 'could not drop leftover dataset accounts (will retry)'));
  // Runs that ended by any path (lost nodes included) lose their dataset account within seconds.
  let datasetSweep: Promise<void> = Promise.resolve();
  every(5000, () => {
    datasetSweep = datasetSweep.then(() => datasets.sweep()).catch(() => undefined);
  });
  // The in-process node restarted with this process: it says what its work dir still holds, like any node.
  if (d.localNode) {
    const hello = await d.localNode.recover();
    lifecycle.onNodeHello(d.localNode.id, hello.runs.map((r) => ({ runId: r.run_id, phase: r.phase })));
  }
  // The nodes the database knows, before the runs on them are carried on.
  await d.registry.refresh().catch((err: unknown) => log.warn({ err: errorText(err) }, 'could not read the known nodes (the registry tick reads them again)'));
  lifecycle.resume();
  // Pushes whose webhook never came (GitLab does not retry): looked for now and every interval (DESIGN §11).
  const reconciler = d.intake
    ? startMissedPushReconciler({
        gitlab: d.gitlab,
        runs: d.runHeads,
        intake: d.intake,
        acceptPush: (...a) => lifecycle.acceptPush(...a),
        log: log.child({ component: 'reconcile' }),
        intervalMs: d.settings.reconcileIntervalMs,
      })
    : null;
  d.registry.start();
  every(Math.min(1000, d.settings.lostAfterMs), () => lifecycle.sweepLostRuns());
  // Held runs' approvals are read again now and then: a lost merge-request hook delays nothing for long.
  every(d.settings.releasePollIntervalMs, () => lifecycle.pollReleases());
  // Pushes another leader stored (every leader takes webhooks) are checked here.
  if (d.settings.intakePollMs !== null) every(d.settings.intakePollMs, () => lifecycle.pickUpStoredPushes());
  return {
    async close() {
      for (const t of timers) clearInterval(t);
      await reconciler?.close();
      await datasetSweep;
    },
  };
}
