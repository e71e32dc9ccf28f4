// The jstat functions mechreward uses (jstat ships no type declarations; it is a CommonJS module).
declare module 'jstat' {
  const jstat: { jStat: { ibeta(x: number, a: number, b: number): number } };
  export default jstat;
}
