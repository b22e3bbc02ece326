/**
 * `/metrics` read the way Prometheus reads it: a strict parser of the text exposition format
 * 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/). Written here because
 * the one npm parser of the format, `parse-prometheus-text-format` 1.1.1, folds every series
 * of a histogram family into one entry and drops labelled `_sum`/`_count` lines, so it cannot
 * read a histogram with labels (and accepts non-numeric values and repeated series).
 *
 * Refused, as Prometheus refuses a scrape for them: a malformed line, name, label or value; a
 * TYPE twice, or after its family's samples; a family's samples not in one group; a series
 * twice; a histogram series without `le`, without its `+Inf` bucket, with bounds out of order
 * or decreasing counts, without `_sum`, or whose `_count` is not its `+Inf` bucket; a counter
 * below zero.
 */
export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface Sample {
  /** The sample's own name (`x_bucket`, `x_sum`...). */
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: MetricType;
  help: string | undefined;
  samples: Sample[];
}

export interface Exposition {
  readonly text: string;
  readonly families: ReadonlyMap<string, Family>;
  family(name: string): Family | undefined;
  /** A counter's or gauge's value for exactly these labels; 0 when the series is absent. */
  value(name: string, labels?: Record<string, string>): number;
  /** A histogram's count, sum and cumulative buckets for exactly these labels; zeros when absent. */
  histogram(name: string, labels?: Record<string, string>): { count: number; sum: number; buckets: Map<number, number> };
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;
/** Go's strconv.ParseFloat, which Prometheus uses: decimals, exponents, and Inf / NaN in any case. */
const FLOAT = /^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)$/i;
const TIMESTAMP = /^-?\d+$/;
const TYPES = new Set<MetricType>(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export class ExpositionError extends Error {
  constructor(lineNo: number, line: string, why: string) {
    super(`line ${lineNo}: ${why}: ${line.length > 200 ? `${line.slice(0, 200)}…` : line}`);
  }
}

export function parseExposition(text: string): Exposition {
  const families = new Map<string, Family>();
  const finished = new Set<string>();
  const series = new Set<string>();
  const typed = new Set<string>();
  let current: Family | undefined;

  const familyOf = (sampleName: string): Family => {
    for (const suffix of ['_bucket', '_sum', '_count']) {
      if (!sampleName.endsWith(suffix)) continue;
      const base = families.get(sampleName.slice(0, -suffix.length));
      if (base && (base.type === 'histogram' || (base.type === 'summary' && suffix !== '_bucket'))) return base;
    }
    let family = families.get(sampleName);
    if (!family) families.set(sampleName, (family = { name: sampleName, type: 'untyped', help: undefined, samples: [] }));
    return family;
  };

  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  lines.forEach((line, i) => {
    const lineNo = i + 1;
    const fail = (why: string): never => {
      throw new ExpositionError(lineNo, line, why);
    };
    if (line.trim() === '') return;
    if (line.startsWith('#')) {
      const meta = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(line);
      if (!meta) return; // a plain comment
      const [, kind, name, rest = ''] = meta as unknown as [string, 'HELP' | 'TYPE', string, string | undefined];
      if (METRIC_NAME.exec(name)?.[0] !== name) fail('bad metric name');
      let family = families.get(name);
      if (family && finished.has(name)) fail(`${kind} after the samples of ${name}`);
      if (!family) families.set(name, (family = { name, type: 'untyped', help: undefined, samples: [] }));
      if (kind === 'HELP') {
        if (family.help !== undefined) fail('HELP twice');
        family.help = unescapeHelp(rest, fail);
      } else {
        const type = rest.trim() as MetricType;
        if (!TYPES.has(type)) fail('unknown TYPE');
        if (typed.has(name) || family.samples.length > 0) fail('TYPE twice, or after samples');
        typed.add(name);
        family.type = type;
      }
      return;
    }

    const sample = parseSample(line, fail);
    const family = familyOf(sample.name);
    if (current && current !== family) finished.add(current.name);
    if (finished.has(family.name) && current !== family) fail(`the samples of ${family.name} are not in one group`);
    current = family;
    const key = `${sample.name}{${Object.entries(sample.labels)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(',')}}`;
    if (series.has(key)) fail('series given twice');
    series.add(key);
    if (family.type === 'counter' && !(sample.value >= 0)) fail('a counter below zero (or NaN)');
    if (family.type === 'histogram' && sample.name === `${family.name}_bucket` && sample.labels.le === undefined) fail('a bucket without le');
    family.samples.push(sample);
  });

  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f);

  const find = (name: string, labels: Record<string, string>) => families.get(name)?.samples.find((s) => s.name === name && sameLabels(s.labels, labels));
  const exposition: Exposition = {
    text,
    families,
    family: (name) => families.get(name),
    value: (name, labels = {}) => find(name, labels)?.value ?? 0,
    histogram: (name, labels = {}) => {
      const family = families.get(name);
      const mine = family?.samples.filter((s) => sameLabels(withoutLe(s.labels), labels)) ?? [];
      const buckets = new Map<number, number>();
      let count = 0;
      let sum = 0;
      for (const s of mine) {
        if (s.name === `${name}_bucket`) buckets.set(parseFloatGo(s.labels.le!), s.value);
        else if (s.name === `${name}_count`) count = s.value;
        else if (s.name === `${name}_sum`) sum = s.value;
      }
      return { count, sum, buckets };
    },
  };
  return exposition;
}

function parseSample(line: string, fail: (why: string) => never): Sample {
  const name = METRIC_NAME.exec(line)?.[0];
  if (!name) fail('no metric name');
  let at = name!.length;
  const labels: Record<string, string> = {};
  if (line[at] === '{') {
    at++;
    for (;;) {
      if (line[at] === '}') {
        at++;
        break;
      }
      const label = LABEL_NAME.exec(line.slice(at))?.[0];
      if (!label) fail('bad label name');
      at += label!.length;
      if (line[at] !== '=' || line[at + 1] !== '"') fail('a label without ="value"');
      at += 2;
      let value = '';
      for (;;) {
        const ch = line[at];
        if (ch === undefined) fail('unterminated label value');
        if (ch === '"') break;
        if (ch === '\\') {
          const next = line[at + 1];
          if (next === '\\' || next === '"') value += next;
          else if (next === 'n') value += '\n';
          else fail('bad escape in a label value');
          at += 2;
          continue;
        }
        value += ch;
        at++;
      }
      at++;
      if (label! in labels) fail(`label ${label} twice`);
      labels[label!] = value;
      if (line[at] === ',') at++;
      else if (line[at] !== '}') fail('expected , or } after a label');
    }
  }
  if (line[at] !== ' ' && line[at] !== '\t') fail('no space before the value');
  const fields = line.slice(at).trim().split(/[ \t]+/);
  if (fields.length < 1 || fields.length > 2) fail('expected a value and at most a timestamp');
  if (!FLOAT.test(fields[0]!)) fail('the value is not a number');
  if (fields[1] !== undefined && !TIMESTAMP.test(fields[1])) fail('the timestamp is not an integer');
  return { name: name!, labels, value: parseFloatGo(fields[0]!) };
}

function checkHistogram(f: Family): void {
  const bySeries = new Map<string, Sample[]>();
  for (const s of f.samples) {
    const key = JSON.stringify(Object.entries(withoutLe(s.labels)).sort(([a], [b]) => (a < b ? -1 : 1)));
    bySeries.set(key, [...(bySeries.get(key) ?? []), s]);
  }
  for (const [key, samples] of bySeries) {
    const where = `${f.name}${key}`;
    const buckets = samples.filter((s) => s.name === `${f.name}_bucket`).map((s) => [parseFloatGo(s.labels.le!), s.value] as const);
    const count = samples.find((s) => s.name === `${f.name}_count`);
    const sum = samples.find((s) => s.name === `${f.name}_sum`);
    if (buckets.at(-1)?.[0] !== Infinity) throw new Error(`${where}: no +Inf bucket last`);
    for (let i = 1; i < buckets.length; i++) {
      if (!(buckets[i]![0] > buckets[i - 1]![0])) throw new Error(`${where}: bucket bounds out of order`);
      if (buckets[i]![1] < buckets[i - 1]![1]) throw new Error(`${where}: cumulative bucket counts decrease`);
    }
    if (!sum) throw new Error(`${where}: no _sum`);
    if (!count || count.value !== buckets.at(-1)![1]) throw new Error(`${where}: _count is not the +Inf bucket`);
  }
}

function parseFloatGo(text: string): number {
  const t = text.toLowerCase().replace(/^\+/, '');
  if (t === 'inf' || t === 'infinity') return Infinity;
  if (t === '-inf' || t === '-infinity') return -Infinity;
  if (t === 'nan' || t === '-nan') return NaN;
  return Number(text);
}

function unescapeHelp(text: string, fail: (why: string) => never): string {
  return text.replace(/\\(.?)/g, (_, ch: string) => (ch === '\\' ? '\\' : ch === 'n' ? '\n' : fail('bad escape in HELP')));
}

function withoutLe(labels: Record<string, string>): Record<string, string> {
  const { le: _le, ...rest } = labels;
  return rest;
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}

/** GET /metrics, checked (status, content type, no cookie) and parsed. */
export async function scrape(baseUrl: string, headers: Record<string, string> = {}): Promise<Exposition> {
  const res = await fetch(`${baseUrl}/metrics`, { headers });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}: ${text}`);
  if (res.headers.get('content-type') !== 'text/plain; version=0.0.4; charset=utf-8') throw new Error(`/metrics content type ${res.headers.get('content-type')}`);
  if (res.headers.get('set-cookie') !== null) throw new Error('/metrics set a cookie');
  return parseExposition(text);
}
