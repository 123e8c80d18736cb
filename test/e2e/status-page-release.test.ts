/**
 * Output release (DESIGN §10) as people see it in real headless Chromium against the leader's real
 * HTTP server, run store and release store: the status page lists the runs whose outputs wait for
 * output checkers with how many approvals each has — never their files, findings or reviewers —
 * and follows them live; the run page shows the policy, the findings, where the review stands with
 * its merge request, and the outcome and reviewers once decided. A private leader's anonymous
 * reader sees the counts and states, not who or which files.
 */
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aNode, aRelease, aRun, launchChromium, startStatusServer, type StatusServer } from '../support/status-page-fixtures.js';

const ARTIFACTS = resolve(import.meta.dirname, '../../test-artifacts');
const MR = 'https://gitlab.example/secd/output-review/-/merge_requests/12';
const FINDINGS = [
  { file: 'results/patient_list.csv', rule: 'forbidden_column', detail: 'column 1 "personnummer" is forbidden' },
  { file: 'results/table2.csv', rule: 'small_cell', detail: 'row 14, column "deaths": a count below 10' },
];
// What a status page must never show of a held run's review.
const REVIEW_ONLY = ['patient_list', 'table2.csv', 'personnummer', 'small_cell', 'forbidden_column', 'bob-checker', 'merge_requests'];

const heldRows = (page: Page) => page.locator('#held-body tr').allInnerTexts();

describe('output release on the status page and the run page', () => {
  let server: StatusServer;
  let browser: Browser;
  let page: Page;
  const errors: string[] = [];

  beforeAll(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    const nodes = [aNode('gpu-01', 2)];
    server = await startStatusServer({ nodes: () => nodes, pollMs: 250 });
    await aRun(server.store, { id: 'run0000101', state: 'held', project: 'oncology/survival', user: 'alice', node: 'gpu-01' });
    await aRelease(server.releases, 'run0000101', { approvalsRequired: 2, datasets: ['cancer_registry'], findings: FINDINGS, approvedBy: ['bob-checker'], mrUrl: MR });
    await aRun(server.store, { id: 'run0000102', state: 'withheld', project: 'oncology/survival', user: 'alice', node: 'gpu-01' });
    await aRelease(server.releases, 'run0000102', { approvedBy: [], mrUrl: MR, outcome: 'withheld', decidedBy: 'olga-owner' });
    await aRun(server.store, { id: 'run0000103', state: 'running', project: 'lab/vision', user: 'carol', node: 'gpu-01' });
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${server.url}/`);
    await page.waitForSelector('html[data-ready="true"]');
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('lists the held run with 1/2 approvals, and nothing of its files, findings or reviewers', async () => {
    await expect.poll(() => heldRows(page)).toEqual([expect.stringMatching(/^run0000101\s+oncology\/survival\s+alice\s+held\s+1\/2 approvals\s+gpu-01\s+\S/)]);
    expect(await page.locator('#t-held').innerText()).toBe('1');
    expect(await page.locator('#recent-body tr[data-run="run0000101"]').innerText()).toMatch(/held 1\/2 approvals\s+outputs held for review/);
    const everything = `${await page.content()}\n${await (await fetch(`${server.url}/api/v1/status`)).text()}`;
    for (const secret of REVIEW_ONLY) expect(everything, secret).not.toContain(secret);
    await page.screenshot({ path: `${ARTIFACTS}/status-page-held.png`, fullPage: true });
  });

  it('draws held and withheld in their own colours, apart from running and failed', async () => {
    const colours = await page.evaluate(() => {
      const of = (state: string) => {
        const el = document.createElement('span');
        el.className = `pill state-${state}`;
        document.body.append(el);
        const c = getComputedStyle(el);
        const key = `${c.backgroundColor} ${c.color} ${c.boxShadow}`;
        el.remove();
        return key;
      };
      return { held: of('held'), withheld: of('withheld'), running: of('running'), failed: of('failed'), queued: of('queued'), none: of('no-such-state') };
    });
    expect(new Set(Object.values(colours)).size).toBe(6);
    expect(await page.locator('#recent-body tr[data-run="run0000102"] .pill').innerText()).toBe('withheld');
  });

  it('follows the review live: a newly held run appears, a second approval shows, a release takes it off', async () => {
    await page.evaluate(() => ((window as unknown as { marker: string }).marker = 'same page'));
    await server.store.transition('run0000103', 'uploading', 'pushing results for review');
    await server.store.transition('run0000103', 'held', 'outputs held for review (0/1 approvals)');
    await aRelease(server.releases, 'run0000103', { approvalsRequired: 1, findings: [], mrUrl: `${MR}3` });
    await expect.poll(() => heldRows(page)).toEqual([
      expect.stringMatching(/^run0000101\s.*1\/2 approvals/),
      expect.stringMatching(/^run0000103\s+lab\/vision\s+carol\s+held\s+0\/1 approvals/),
    ]);
    expect(await page.locator('#t-held').innerText()).toBe('2');

    const at = new Date().toISOString();
    await server.releases.update('run0000101', { approvals: [{ user: 'bob-checker', userId: 101, at }, { user: 'dan-checker', userId: 102, at }] });
    await expect.poll(() => heldRows(page)).toEqual([expect.stringMatching(/^run0000101\s.*2\/2 approvals/), expect.stringMatching(/^run0000103\s/)]);

    await server.releases.update('run0000101', { outcome: 'released', decidedBy: 'bob-checker, dan-checker', decidedAt: at });
    await server.store.transition('run0000101', 'succeeded', 'released after review by bob-checker, dan-checker');
    await server.releases.update('run0000103', { outcome: 'withheld', decidedBy: 'olga-owner', decidedAt: at });
    await server.store.transition('run0000103', 'withheld', 'outputs withheld at review by olga-owner');
    await expect.poll(() => heldRows(page)).toEqual(['No outputs wait for review.']);
    expect(await page.locator('#t-held').innerText()).toBe('0');
    expect(await page.locator('#recent-body tr[data-run="run0000101"]').innerText()).toMatch(/succeeded\s+released after review/);
    expect(await page.evaluate(() => (window as unknown as { marker?: string }).marker)).toBe('same page');
    expect(errors).toEqual([]);
  });

  it('the run page shows the policy, the findings, the review with its merge request, and then the outcome, in place', async () => {
    await aRun(server.store, { id: 'run0000104', state: 'held', project: 'oncology/survival', user: 'alice', node: 'gpu-01' });
    await aRelease(server.releases, 'run0000104', { approvalsRequired: 2, datasets: ['cancer_registry'], findings: FINDINGS, approvedBy: ['bob-checker'], mrUrl: MR });
    const run = await browser.newPage();
    await run.goto(`${server.url}/runs/run0000104`);
    expect(await run.locator('main h1').innerText()).toMatch(/Run run0000104\s+held/);
    expect(await run.locator('#release-policy').innerText()).toMatch(/^review: 2 approvals from output checkers .* set by dataset cancer_registry$/);
    expect(await run.locator('#review').innerText()).toBe('held for review: 1/2 approvals — the merge request in the review project');
    expect(await run.locator('#review a').getAttribute('href')).toBe(MR);
    expect(await run.locator('#findings tbody tr').allInnerTexts()).toEqual([
      expect.stringMatching(/^results\/patient_list\.csv\s+forbidden_column\s+column 1 "personnummer" is forbidden$/),
      expect.stringMatching(/^results\/table2\.csv\s+small_cell\s+row 14, column "deaths": a count below 10$/),
    ]);
    await run.screenshot({ path: `${ARTIFACTS}/run-page-held.png`, fullPage: true });

    const at = new Date().toISOString();
    await server.releases.update('run0000104', { approvals: [{ user: 'bob-checker', userId: 101, at }, { user: 'erin-checker', userId: 103, at }] });
    await expect.poll(() => run.locator('#review').innerText(), { timeout: 5000 }).toMatch(/^held for review: 2\/2 approvals/);
    await server.releases.update('run0000104', { outcome: 'released', decidedBy: 'bob-checker, erin-checker', decidedAt: at });
    await server.store.transition('run0000104', 'succeeded', 'released after review by bob-checker, erin-checker');
    await expect.poll(() => run.locator('main h1').innerText(), { timeout: 5000 }).toMatch(/succeeded/);
    expect(await run.locator('#review').innerText()).toMatch(/^released after review by bob-checker, erin-checker at \d{4}-/);
    expect(await run.locator('#approvals li').allInnerTexts()).toEqual([expect.stringMatching(/^bob-checker /), expect.stringMatching(/^erin-checker /)]);
    await run.close();
  });
});

describe('output release on a private leader, read without the token', () => {
  let server: StatusServer;
  let browser: Browser;

  beforeAll(async () => {
    server = await startStatusServer({ nodes: () => [aNode('gpu-01', 1)], pollMs: 250, readToken: 'private-read-token-0123456789' });
    await aRun(server.store, { id: 'run0000201', state: 'held', project: 'oncology/survival', user: 'alice-researcher', node: 'gpu-01' });
    await aRelease(server.releases, 'run0000201', { approvalsRequired: 2, datasets: ['cancer_registry'], findings: FINDINGS, approvedBy: ['bob-checker'], mrUrl: MR });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('shows the held run and its 1/2 approvals, not who pushed it, who reviewed, the merge request or which files', async () => {
    const page = await browser.newPage();
    await page.goto(`${server.url}/`);
    await page.waitForSelector('html[data-ready="true"]');
    await expect.poll(() => heldRows(page)).toEqual([expect.stringMatching(/^run0000201\s+\(hidden\)\s+\(hidden\)\s+held\s+1\/2 approvals/)]);
    await page.goto(`${server.url}/runs/run0000201`);
    expect(await page.locator('#review').innerText()).toBe('held for review: 1/2 approvals (the merge request is not open yet)');
    expect(await page.locator('#findings tbody tr').allInnerTexts()).toEqual([
      expect.stringMatching(/^\(hidden\)\s+forbidden_column\s+\(hidden\)$/),
      expect.stringMatching(/^\(hidden\)\s+small_cell\s+\(hidden\)$/),
    ]);
    const text = await page.content();
    for (const secret of ['alice-researcher', 'oncology', 'cancer_registry', 'bob-checker', 'merge_requests', 'patient_list', 'personnummer']) expect(text, secret).not.toContain(secret);
    await page.close();
  });
});
