interface Point { x: number; y: number }

export function distance(a: Point, b: Point): number {
  const dx = a.x - b.x;
  <CURSOR>
}
