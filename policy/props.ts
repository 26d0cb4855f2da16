// Reading resource props by the contract's property names, without tripping
// over preview unknowns.
//
// Resource policies get a resource's inputs, stack policies every resource's
// outputs (the dynamic providers echo their inputs into their outputs, and the
// components register their facts as both), so one set of names serves both.
// During preview a value that is not known yet is an engine sentinel, and
// reading it through the engine's proxy throws: every read here turns that into
// UNKNOWN, so a check whose input is unknown is skipped instead of failing the
// whole policy.
import { PolicyResource, UnknownValueError, unknownCheckingProxy } from "@pulumi/policy";
import type { Resource } from "@pulumi/pulumi";
import type { PropsByType } from "../lib/contract";

/** A value the engine does not know yet (preview). */
export const UNKNOWN: unique symbol = Symbol("unknown during preview");
export type Unknown = typeof UNKNOWN;

/** Whether a value is one of the engine's unknown sentinels, as @pulumi/policy's own proxy decides. */
export function isUnknownValue(value: unknown): boolean {
    if (typeof value !== "string") return false;
    try {
        return unknownCheckingProxy({ value }).value !== value;
    } catch (e) {
        if (e instanceof UnknownValueError) return true;
        throw e;
    }
}

function normalize(value: unknown): unknown {
    return isUnknownValue(value) ? UNKNOWN : value;
}

/** obj[key], with an unknown value (sentinel or the proxy's UnknownValueError) as UNKNOWN. */
export function readProp(obj: unknown, key: string): unknown {
    if (obj === UNKNOWN) return UNKNOWN;
    if (obj === null || typeof obj !== "object") return undefined;
    try {
        return normalize((obj as Record<string, unknown>)[key]);
    } catch (e) {
        if (e instanceof UnknownValueError) return UNKNOWN;
        throw e;
    }
}

/** Follows a path of keys; UNKNOWN as soon as any step is unknown. */
export function readPath(obj: unknown, ...path: string[]): unknown {
    let current = normalize(obj);
    for (const key of path) {
        current = readProp(current, key);
        if (current === UNKNOWN) return UNKNOWN;
    }
    return current;
}

/** A string at the path, UNKNOWN, or undefined for anything else (absent, null, a number). */
export function readString(obj: unknown, ...path: string[]): string | Unknown | undefined {
    const value = readPath(obj, ...path);
    if (value === UNKNOWN) return UNKNOWN;
    return typeof value === "string" ? value : undefined;
}

/** The [key, value] pairs of an object at the path (values may be UNKNOWN); [] when it is not an object. */
export function readEntries(obj: unknown, ...path: string[]): Array<[string, unknown]> | Unknown {
    const record = readPath(obj, ...path);
    if (record === UNKNOWN) return UNKNOWN;
    if (record === null || typeof record !== "object" || Array.isArray(record)) return [];
    return Object.keys(record).map((key): [string, unknown] => [key, readProp(record, key)]);
}

/** The elements of an array at the path (elements may be UNKNOWN); undefined when it is not an array. */
export function readArray(obj: unknown, ...path: string[]): unknown[] | Unknown | undefined {
    const array = readPath(obj, ...path);
    if (array === UNKNOWN) return UNKNOWN;
    if (!Array.isArray(array)) return undefined;
    const length = readProp(array, "length");
    const items: unknown[] = [];
    for (let i = 0; i < (typeof length === "number" ? length : 0); i++) items.push(readProp(array, String(i)));
    return items;
}

type Key<P> = keyof P & string;
type SubKey<P, K extends Key<P>> = keyof NonNullable<P[K]> & string;

/**
 * The props of one resource, read by the names its type declares in lib/contract.ts: renaming a
 * property there makes every read of the old name here a type error.
 */
export class Props<P> {
    constructor(readonly raw: unknown) {}

    /** Whether the property is present (known or unknown). */
    has(key: Key<P>): boolean {
        return readPath(this.raw, key) !== undefined;
    }

    string<K extends Key<P>>(key: K): string | Unknown | undefined;
    string<K extends Key<P>>(key: K, sub: SubKey<P, K>): string | Unknown | undefined;
    string(...path: string[]): string | Unknown | undefined {
        return readString(this.raw, ...path);
    }

    entries(key: Key<P>): Array<[string, unknown]> | Unknown {
        return readEntries(this.raw, key);
    }

    array(key: Key<P>): unknown[] | Unknown | undefined {
        return readArray(this.raw, key);
    }
}

/** A type token of the contract (lib/contract.ts PropsByType). */
export type ContractType = keyof PropsByType;

/** What validateResourceOfType needs of a resource class: its type token, and its args type for the props. */
export interface ContractClass<T extends ContractType> {
    new (name: string, args: PropsByType[T]): Resource;
    readonly __pulumiType: T;
}

/**
 * Dynamic resources have no exported class to hand to `validateResourceOfType`; this stands in for one,
 * typed by the contract, so resource policies filter by type token and see props of the contract's shape.
 */
export function contractClass<T extends ContractType>(type: T): ContractClass<T> {
    return { __pulumiType: type } as unknown as ContractClass<T>;
}

/** A stack resource of a contract type, its props readable by the contract's names. */
export interface ContractResource<T extends ContractType> {
    type: T;
    name: string;
    urn: string;
    props: Props<PropsByType[T]>;
}

/** The stack's resources of one contract type. */
export function ofType<T extends ContractType>(resources: PolicyResource[], type: T): Array<ContractResource<T>> {
    return resources.filter((r) => r.type === type).map((r) => ({ type, name: r.name, urn: r.urn, props: new Props<PropsByType[T]>(r.props) }));
}

/** The props of a resource known to be of a contract type (a policy that checks several types tests `type` first). */
export function propsOf<T extends ContractType>(resource: { props: unknown }, _type: T): Props<PropsByType[T]> {
    return new Props<PropsByType[T]>(resource.props);
}

/** Typed reads of props a resource policy got from validateResourceOfType. */
export function read<P>(props: P): Props<P> {
    return new Props<P>(props);
}
