import { validateMetricName, type Metric, type Registry } from 'prom-client';

/**
 * Counters, gauges and histograms whose numbers live in pre-bound cells: updating one is a
 * plain `+=` on a field. prom-client's own label-bound children hash and validate their labels
 * on every `inc`/`observe` (≈ 1.1-1.3 µs each on Node 20, measured), which a chat turn would
 * pay several times over. Each instrument is registered in a prom-client Registry and hands
 * it its cells in prom-client's own metric shape (`get()`), so exposition, label escaping and
 * the default Node metrics stay prom-client's.
 *
 * A cell is created once per label set (`cell()` is idempotent) and kept by its caller.
 */
type Labels = Readonly<Record<string, string>>;

interface ExportedValue {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

abstract class Instrument<C> {
  readonly #cells = new Map<string, C>();
  readonly aggregator = 'sum';

  constructor(
    registry: Registry,
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge' | 'histogram',
    readonly labelNames: readonly string[],
  ) {
    if (!validateMetricName(name)) throw new Error(`invalid metric name ${name}`);
    for (const l of labelNames) if (!LABEL_NAME.test(l) || l.startsWith('__') || l === 'le') throw new Error(`invalid label name ${l}`);
    // The registry renders whatever it holds through get(); these are not prom-client classes.
    registry.registerMetric(this as unknown as Metric);
  }

  /** The cell of this label set (made on first use; keep it). */
  cell(labels: Labels): C {
    const key = this.labelNames.map((l) => labels[l] ?? '').join('\u0000');
    let cell = this.#cells.get(key);
    if (!cell) {
      const own: Record<string, string> = {};
      for (const l of this.labelNames) own[l] = labels[l] ?? '';
      this.#cells.set(key, (cell = this.create(own)));
    }
    return cell;
  }

  protected abstract create(labels: Labels): C;
  protected abstract exported(cells: Iterable<C>): ExportedValue[];

  /** Runs before each export, to bring values read from elsewhere up to date. */
  collect?: () => void;

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: ExportedValue[] }> {
    this.collect?.();
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.exported(this.#cells.values()) };
  }

  /** Registry.resetMetrics(): counts are cumulative here, so nothing is reset. */
  reset(): void {}
}

export class ValueCell {
  value = 0;
  constructor(readonly labels: Labels) {}
}

class ValueInstrument extends Instrument<ValueCell> {
  protected create(labels: Labels): ValueCell {
    return new ValueCell(labels);
  }

  protected exported(cells: Iterable<ValueCell>): ExportedValue[] {
    return [...cells].map((c) => ({ labels: { ...c.labels }, value: c.value }));
  }
}

/** Only ever grows (`cell.value += n`, n >= 0). */
export class CounterCells extends ValueInstrument {
  constructor(registry: Registry, name: string, help: string, labelNames: readonly string[]) {
    super(registry, name, help, 'counter', labelNames);
  }
}

/** Goes up and down, or is set from a reading in `collect`. */
export class GaugeCells extends ValueInstrument {
  constructor(registry: Registry, name: string, help: string, labelNames: readonly string[], collect?: (gauge: GaugeCells) => void) {
    super(registry, name, help, 'gauge', labelNames);
    if (collect) this.collect = () => collect(this);
  }
}

export class HistogramCell {
  /** Observations per bucket (not cumulative); the last one is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Labels,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

export class HistogramCells extends Instrument<HistogramCell> {
  readonly #bounds: readonly number[];

  constructor(registry: Registry, name: string, help: string, labelNames: readonly string[], buckets: readonly number[]) {
    super(registry, name, help, 'histogram', labelNames);
    const sorted = [...buckets].sort((a, b) => a - b);
    if (sorted.length === 0 || sorted.some((b, i) => !Number.isFinite(b) || (i > 0 && b === sorted[i - 1]))) throw new Error(`${name}: buckets must be distinct finite numbers`);
    this.#bounds = sorted;
  }

  protected create(labels: Labels): HistogramCell {
    return new HistogramCell(labels, this.#bounds);
  }

  protected exported(cells: Iterable<HistogramCell>): ExportedValue[] {
    const out: ExportedValue[] = [];
    for (const c of cells) {
      let cumulative = 0;
      for (let i = 0; i <= this.#bounds.length; i++) {
        cumulative += c.counts[i]!;
        out.push({ labels: { ...c.labels, le: i < this.#bounds.length ? this.#bounds[i]! : '+Inf' }, value: cumulative, metricName: `${this.name}_bucket` });
      }
      out.push({ labels: { ...c.labels }, value: c.sum, metricName: `${this.name}_sum` });
      out.push({ labels: { ...c.labels }, value: c.count, metricName: `${this.name}_count` });
    }
    return out;
  }
}
