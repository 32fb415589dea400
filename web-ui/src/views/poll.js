// Polls `load` every `ms` and hands the result to `show` until stopped;
// the first failure is shown; later ones are dropped until a load succeeds.

export function poll(load, show, onError, ms = 1000) {
  let stopped = false;
  let timer = null;
  let failedBefore = false;
  async function tick() {
    try {
      const data = await load();
      if (stopped) return;
      failedBefore = false;
      show(data);
    } catch (error) {
      if (stopped) return;
      if (!failedBefore) onError(error);
      failedBefore = true;
    }
    if (!stopped) timer = setTimeout(tick, ms);
  }
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}
