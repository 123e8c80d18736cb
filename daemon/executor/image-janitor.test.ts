import { describe, expect, it } from 'vitest';
import { imageJanitor } from './image-janitor.js';

describe("the node's image janitor", () => {
  it('removes an old image only once every build running on the node has ended', async () => {
    const removed: string[] = [];
    const janitor = imageJanitor(async (id) => removed.push(id));
    const a = await janitor.begin();
    const b = await janitor.begin();
    janitor.retire('sha256:old-a');
    a();
    await janitor.settled();
    expect(removed).toEqual([]);
    b();
    await janitor.settled();
    expect(removed).toEqual(['sha256:old-a']);
    // With no build running, at once.
    janitor.retire('sha256:old-b');
    await janitor.settled();
    expect(removed).toEqual(['sha256:old-a', 'sha256:old-b']);
  });

  it('a build that starts while old images are being removed waits for the removal to finish', async () => {
    const events: string[] = [];
    let finish = () => {};
    const janitor = imageJanitor(async (id) => {
      events.push(`removing ${id}`);
      await new Promise<void>((r) => (finish = r));
      events.push(`removed ${id}`);
    });
    janitor.retire('sha256:old');
    const starting = janitor.begin().then((done) => {
      events.push('build starts');
      return done;
    });
    await new Promise((r) => setTimeout(r, 10));
    expect(events).toEqual(['removing sha256:old']);
    finish();
    (await starting)();
    expect(events).toEqual(['removing sha256:old', 'removed sha256:old', 'build starts']);
  });

  it('a failed removal is left alone, and the next ones still run; ending a build twice counts once', async () => {
    const removed: string[] = [];
    const janitor = imageJanitor(async (id) => {
      if (id === 'bad') throw new Error('conflict');
      removed.push(id);
    });
    const a = await janitor.begin();
    const b = await janitor.begin();
    janitor.retire('bad');
    janitor.retire('good');
    a();
    a();
    await janitor.settled();
    expect(removed).toEqual([]);
    b();
    await janitor.settled();
    expect(removed).toEqual(['good']);
  });
});
