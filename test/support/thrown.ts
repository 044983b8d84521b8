/** The error `act` throws, so a test can assert its class, name and exact message; fails if it throws none. */
export function thrown(act: () => unknown): Error {
  try {
    act();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the call to throw');
}
