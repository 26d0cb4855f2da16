// What every benchmark hands back, and how it is printed: headline figures with
// a one-line meaning each, optional detail tables, and notes.

export interface Figure {
    name: string;
    value: string;
    meaning: string;
}

export interface Table {
    title: string;
    header: string[];
    rows: string[][];
}

export interface BenchResult {
    id: number;
    title: string;
    figures: Figure[];
    tables: Table[];
    notes: string[];
    /** Wall time of the whole benchmark, ms. */
    elapsedMs?: number;
}

export function median(values: number[]): number {
    if (values.length === 0) return NaN;
    const sorted = [...values].sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Milliseconds as "12.3 s" from 10 s up, "123 ms" from 10 ms up, "1.23 ms" below. */
export function ms(value: number): string {
    if (!Number.isFinite(value)) return "n/a";
    if (Math.abs(value) >= 10_000) return `${(value / 1000).toFixed(1)} s`;
    if (Math.abs(value) >= 1000) return `${(value / 1000).toFixed(2)} s`;
    if (Math.abs(value) >= 10 || Number.isInteger(value)) return `${value.toFixed(0)} ms`;
    return `${value.toFixed(2)} ms`;
}

export function ratio(value: number): string {
    return Number.isFinite(value) ? `${value.toFixed(value >= 10 ? 1 : 2)}×` : "n/a";
}

/** Runs `fn` and returns its result with the wall time it took. */
export async function timed<T>(fn: () => Promise<T> | T): Promise<{ result: T; ms: number }> {
    const start = performance.now();
    const result = await fn();
    return { result, ms: performance.now() - start };
}

/** A table with padded columns, for the terminal. */
export function textTable(header: string[], rows: string[][]): string {
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
    const line = (cells: string[]) =>
        cells
            .map((c, i) => (c ?? "").padEnd(widths[i]))
            .join("  ")
            .trimEnd();
    return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

export function markdownTable(header: string[], rows: string[][]): string {
    const esc = (c: string) => (c ?? "").replace(/\|/g, "\\|");
    return [
        `| ${header.map(esc).join(" | ")} |`,
        `| ${header.map(() => "---").join(" | ")} |`,
        ...rows.map((r) => `| ${r.map(esc).join(" | ")} |`),
    ].join("\n");
}

export function printResult(r: BenchResult): void {
    const took = r.elapsedMs === undefined ? "" : ` (took ${ms(r.elapsedMs)})`;
    console.log(`\n=== ${r.id}. ${r.title}${took}\n`);
    console.log(
        textTable(
            ["figure", "value", "meaning"],
            r.figures.map((f) => [f.name, f.value, f.meaning]),
        ),
    );
    for (const t of r.tables) {
        console.log(`\n${t.title}\n`);
        console.log(textTable(t.header, t.rows));
    }
    if (r.notes.length > 0) {
        console.log("");
        for (const n of r.notes) console.log(`- ${n}`);
    }
}

export function resultMarkdown(r: BenchResult): string {
    const took = r.elapsedMs === undefined ? "" : ` (took ${ms(r.elapsedMs)})`;
    const parts = [
        `## ${r.id}. ${r.title}${took}`,
        markdownTable(
            ["Figure", "Value", "Meaning"],
            r.figures.map((f) => [f.name, f.value, f.meaning]),
        ),
    ];
    for (const t of r.tables) parts.push(`**${t.title}**\n\n${markdownTable(t.header, t.rows)}`);
    if (r.notes.length > 0) parts.push(r.notes.map((n) => `- ${n}`).join("\n"));
    return parts.join("\n\n");
}
