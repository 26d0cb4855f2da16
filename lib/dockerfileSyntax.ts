// The syntax errors `docker build` would stop on, found before anything runs:
// an unknown instruction, or a first instruction that is not FROM (or ARG).
import { DockerfileParser } from "dockerfile-ast";

const INSTRUCTIONS = new Set([
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
]);

/** One message per problem, each naming `<path>:<line>`; empty when Docker would parse the file. */
export function dockerfileSyntaxProblems(text: string, dockerfilePath = "Dockerfile"): string[] {
    const instructions = DockerfileParser.parse(text).getInstructions();
    const problems: string[] = [];
    for (const instruction of instructions) {
        const keyword = instruction.getKeyword().toUpperCase();
        if (!INSTRUCTIONS.has(keyword)) {
            const line = instruction.getRange().start.line + 1;
            problems.push(
                `${dockerfilePath}:${line}: unknown instruction \`${instruction.getKeyword()}\` (line: ${text.split(/\r?\n/)[line - 1].trim()}): ` +
                    "fix the typo (FROM, RUN, COPY, ENV, … are the instructions Docker knows).",
            );
        }
    }
    const first = instructions.find((i) => INSTRUCTIONS.has(i.getKeyword().toUpperCase()) && i.getKeyword().toUpperCase() !== "ARG");
    if (problems.length === 0 && (!first || first.getKeyword().toUpperCase() !== "FROM")) {
        const where = first ? `:${first.getRange().start.line + 1}` : "";
        problems.push(`${dockerfilePath}${where}: the first instruction must be FROM (only ARG may come before it).`);
    }
    return problems;
}
