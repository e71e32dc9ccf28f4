// The one jstat function mechreward uses (jstat ships no type declarations; it is a CommonJS module).
declare module 'jstat' {
  const jstat: { jStat: { studentt: { cdf(t: number, dof: number): number } } };
  export default jstat;
}
