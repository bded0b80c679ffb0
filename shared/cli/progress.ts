import { SingleBar } from 'cli-progress'

export interface Progress {
  update(done: number, total: number, label?: string): void
  stop(): void
}

const mib = (n: number) => (n / 1048576).toFixed(1)

/**
 * A progress bar on stderr when it is a terminal; otherwise a line every few seconds, so
 * logs of unattended runs still show that long work is moving.
 */
export function createProgress(title: string): Progress {
  if (process.stderr.isTTY) {
    const bar = new SingleBar({
      format: `${title} [{bar}] {percentage}% | {doneMiB}/{totalMiB} MiB | {label} | eta {eta_formatted}`,
      stream: process.stderr,
      hideCursor: true,
    })
    let started = false
    return {
      update(done, total, label = '') {
        if (!started) {
          bar.start(Math.max(1, total), 0, { doneMiB: '0.0', totalMiB: mib(total), label })
          started = true
        }
        bar.setTotal(Math.max(1, total))
        bar.update(done, { doneMiB: mib(done), totalMiB: mib(total), label })
      },
      stop: () => {
        if (started) bar.stop()
      },
    }
  }
  let last = 0
  return {
    update(done, total, label = '') {
      const now = Date.now()
      if (now - last < 2000 && done < total) return
      last = now
      const pct = total > 0 ? Math.floor((100 * done) / total) : 100
      process.stderr.write(`${title} ${label} ${pct}% (${mib(done)}/${mib(total)} MiB)\n`)
    },
    stop() {},
  }
}
